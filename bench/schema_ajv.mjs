// ajv baseline for bench/schema_bench.lua: same schemas, same data.
//   node bench/schema_ajv.mjs CASES.json [seconds] -> "case<TAB>per-second" lines
import { readFileSync } from "node:fs";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const [file, secs] = process.argv.slice(2);
const seconds = Number(secs || 1);
const cases = JSON.parse(readFileSync(file, "utf8"));

for (const c of cases) {
  const ajv = new Ajv({ allErrors: false, strict: false });
  addFormats(ajv);
  const schema = { ...c.schema };
  delete schema.$schema; // ajv's default build speaks draft-07 already
  const validate = ajv.compile(schema);
  if (validate(c.data) !== c.valid) throw new Error(`${c.name}: unexpected result`);
  // CPU time of the process (user + system), as os.clock() on the Lua
  // side: a busy machine then slows neither side's figure by preemption.
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
  let n = 0;
  const t0 = cpu();
  let elapsed;
  do {
    for (let i = 0; i < 1000; i++) validate(c.data);
    n += 1000;
    elapsed = cpu() - t0;
  } while (elapsed < seconds);
  console.log(`${c.name}\t${Math.round(n / elapsed)}`);
}
