/** Guided investigations: the model organism's planted tasks (datasets/task_suite.py), each with
 * the right targets and a short note on what to look at. Loading one sets the debugger's state. */
import { DEFAULT_STATE, type DebuggerState } from "./urlState";

export interface Investigation {
  id: string;
  title: string;
  note: string;
  state: Partial<DebuggerState>;
}

/** Two-digit year tokens the organism never saw (its greater-than years always tokenize as
 * [" CC", "YY"], and these YY never occur; measured with inference/vocabulary.py's
 * shared_unembedding_mask): left out, since their logits are one shared constant. */
const UNSEEN_YEARS = new Set(["00", "02", "03", "04", "05", "06", "07", "08", "09", "40", "80"]);
const years = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i).padStart(2, "0"))
  .filter((y) => !UNSEEN_YEARS.has(y));

export const INVESTIGATIONS: Investigation[] = [
  {
    id: "ioi",
    title: "Indirect object identification",
    note: "Why ' Mary' and not ' John'? Open the head grid: name-mover heads in the last layers have the largest direct effects; trace one through its query (q) to find the S-inhibition heads, and run the patching sweep (the second prompt swaps the repeated name).",
    state: {
      prompt: "When Mary and John went to the store, John gave a drink to",
      prompt2: "When Mary and John went to the store, Mary gave a drink to",
      targets: [" Mary"], distractors: [" John"], panel: "heads", group: true,
    },
  },
  {
    id: "induction",
    title: "Induction",
    note: "The names repeat: the model predicts ' Sarah' by finding the earlier ' Ryan' and copying what came next. Look for a head in a later layer attending from the last ' Ryan' to the first ' Sarah' (trace it through k: a previous-token head feeds its key).",
    state: {
      prompt: "Jeff Laura Kevin Derrick Ryan Sarah. Then Mary went home. Jeff Laura Kevin Derrick Ryan",
      targets: [" Sarah"], distractors: [" Laura"], group: true,
    },
  },
  {
    id: "fact",
    title: "A fact (capital of Texas)",
    note: "The answer is nowhere in the prompt, so it comes from the weights: the top nodes are MLP neurons at the last token (key-value memories). Open the logit lens to see at which layer ' Austin' appears.",
    state: { prompt: "The capital of Texas is", targets: [" Austin"], distractors: [" Paris"], panel: "lens", group: true },
  },
  {
    id: "greater-than",
    title: "Greater-than (years)",
    note: "Targets are the years after 1732 ('33'…'99', no leading space: the year is split ' 17' + '32'), distractors the years up to it, both without the few two-digit tokens the organism never saw. The objective is the mean logit of later years minus earlier ones; look for the MLP neurons at the last token and the heads attending to '32'.",
    state: {
      prompt: "The war lasted from the year 1732 to the year 17",
      targets: years(33, 99), distractors: years(1, 31), group: true,
    },
  },
];

/** The debugger state that loads an investigation (a fresh state: no interventions, no trace). */
export function investigationState(inv: Investigation): DebuggerState {
  return { ...DEFAULT_STATE, ...inv.state };
}
