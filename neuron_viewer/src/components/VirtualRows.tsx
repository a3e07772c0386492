/** A fixed-row-height virtual list: only the rows in view (plus a margin) are in the DOM, so a
 * table of 10,000 rows scrolls and re-sorts smoothly. */
import { useState, type ReactNode, type UIEvent } from "react";

export interface VirtualRowsProps {
  count: number;
  rowHeight: number;
  height: number;
  overscan?: number;
  renderRow: (index: number) => ReactNode;
  className?: string;
}

export function visibleRange(scrollTop: number, height: number, rowHeight: number, count: number, overscan: number) {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(count, Math.ceil((scrollTop + height) / rowHeight) + overscan);
  return { first, last };
}

export function VirtualRows({ count, rowHeight, height, overscan = 8, renderRow, className }: VirtualRowsProps) {
  const [scrollTop, setScrollTop] = useState(0);
  const { first, last } = visibleRange(scrollTop, height, rowHeight, count, overscan);
  const rows: ReactNode[] = [];
  for (let i = first; i < last; i++) rows.push(renderRow(i));
  return (
    <div
      className={className}
      style={{ height, overflowY: "auto", position: "relative" }}
      onScroll={(e: UIEvent<HTMLDivElement>) => setScrollTop(e.currentTarget.scrollTop)}
      data-testid="virtual-rows"
    >
      <div style={{ height: count * rowHeight, position: "relative" }}>
        <div style={{ position: "absolute", top: first * rowHeight, left: 0, right: 0 }}>{rows}</div>
      </div>
    </div>
  );
}
