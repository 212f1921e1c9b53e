// After tsup: makes the published declarations work without the optional clients installed.
// ioredis and postgres are optional peers; the declarations name their types (the adapters take a
// ready client), so a project with only one of them (or neither) would fail to compile them
// (TS2307 / TS2882 with skipLibCheck: false). Here:
// - bare `import 'ioredis';` / `import 'postgres';` lines (left by the bundler, they carry nothing) go;
// - each `import { ... } from 'ioredis' | 'postgres'` gets a `@ts-ignore`: with the client
//   installed its real types apply, without it those few option types are `any`.
// .ci/check-package type-checks consumer projects with each combination to prove it.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const PEERS = ['ioredis', 'postgres'];
const dist = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'dist');
const bare = new RegExp(`^import '(${PEERS.join('|')})';\\n`, 'gm');
const named = new RegExp(`^(import (?:type )?\\{[^}]*\\} from '(?:${PEERS.join('|')})';)$`, 'gm');

let changed = 0;
for (const file of await readdir(dist)) {
  if (!/\.d\.c?ts$/.test(file)) continue;
  const full = path.join(dist, file);
  const before = await readFile(full, 'utf8');
  const after = before.replace(bare, '').replace(named, '// @ts-ignore optional peer dependency: its types are `any` when it is not installed\n$1');
  if (after !== before) {
    await writeFile(full, after);
    changed++;
  }
}
const leftover = [];
for (const file of await readdir(dist)) {
  if (!/\.d\.c?ts$/.test(file)) continue;
  const lines = (await readFile(path.join(dist, file), 'utf8')).split('\n');
  lines.forEach((line, i) => {
    if (new RegExp(`from '(${PEERS.join('|')})'|^import '(${PEERS.join('|')})'`).test(line) && !lines[i - 1]?.startsWith('// @ts-ignore'))
      leftover.push(`${file}:${i + 1}: ${line}`);
  });
}
if (leftover.length > 0) {
  console.error(`optional-peer-types: imports of optional peers left unguarded:\n${leftover.join('\n')}`);
  process.exit(1);
}
console.log(`optional-peer-types: ${changed} declaration files made safe without ioredis/postgres`);
