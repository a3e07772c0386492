// Fails when src/api/schema.d.ts is not what openapi-typescript generates from openapi.json
// (regenerate with `npm run gen:api`). openapi.json itself is exported by the server
// (scripts/export_openapi.py at the repository root; its --check flag guards that side).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const checkedIn = join(root, "src/api/schema.d.ts");
const dir = mkdtempSync(join(tmpdir(), "mechscope-api-"));
try {
  const fresh = join(dir, "schema.d.ts");
  execFileSync(join(root, "node_modules/.bin/openapi-typescript"), [join(root, "openapi.json"), "-o", fresh, "--default-non-nullable", "false"],
    { stdio: ["ignore", "ignore", "inherit"] });
  if (readFileSync(fresh, "utf8") !== readFileSync(checkedIn, "utf8")) {
    console.error("src/api/schema.d.ts is stale: it differs from the types generated from openapi.json.\n" +
      "Run `npm run gen:api` in neuron_viewer/ and commit the result.");
    process.exit(1);
  }
  console.log("check:api: src/api/schema.d.ts matches openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
