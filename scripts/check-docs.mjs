// Docs that run: every ```ts block of README.md and docs/*.md is type-checked (strict) against the
// package's sources, each block as its own module; and every psql command stops on the first error.
// A block that is deliberately partial is marked ```ts nocheck (use sparingly).
// Names a snippet uses without defining (the bot's chatId, your model...) are declared in PRELUDE.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const files = [
  'README.md',
  ...readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const PRELUDE = `
declare const chatId: number;
declare const text: string;
declare const url: string;
declare const pg: string;
declare const store: import('tiered-conversation-store').TieredStore;
declare const model: import('@langchain/core/language_models/chat_models').BaseChatModel & import('ai').LanguageModel;
declare const tools: import('ai').ToolSet;
`;

const work = path.join(root, 'node_modules', '.cache', 'check-docs');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const problems = [];
const blocks = [];
for (const file of files) {
  const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\S*)\s*(.*)$/.exec(lines[i]);
    if (!fence?.[1]) continue;
    const end = lines.findIndex((l, j) => j > i && l.startsWith('```'));
    const body = lines.slice(i + 1, end);
    if (fence[1] === 'ts' && fence[2] !== 'nocheck') blocks.push({ file, line: i + 1, body });
    if (fence[1] === 'sh' || fence[1] === 'bash') {
      body.forEach((cmd, k) => {
        if (/\|\s*psql\b|^\s*psql\b/.test(cmd) && !/-v ON_ERROR_STOP=1/.test(cmd))
          problems.push(`${file}:${i + 2 + k}: psql without -v ON_ERROR_STOP=1 (it exits 0 when statements fail)`);
      });
    }
    i = end;
  }
  // Inline commands too (`... | psql ...` in prose).
  lines.forEach((l, k) => {
    for (const m of l.matchAll(/`([^`]*\bpsql\b[^`]*)`/g)) {
      if (/\|\s*psql|^psql /.test(m[1]) && !m[1].includes('-v ON_ERROR_STOP=1')) problems.push(`${file}:${k + 1}: psql without -v ON_ERROR_STOP=1`);
    }
  });
}

const names = blocks.map((block, n) => {
  const name = `snippet${String(n).padStart(2, '0')}.ts`;
  const where = `// ${block.file}:${block.line}\n`;
  writeFileSync(path.join(work, name), `${where}${block.body.join('\n')}\nexport {};\n`);
  return name;
});
writeFileSync(path.join(work, 'prelude.d.ts'), PRELUDE);
const src = path.relative(work, path.join(root, 'src'));
writeFileSync(
  path.join(work, 'tsconfig.json'),
  JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2023', 'ES2024.String'],
        module: 'ESNext',
        moduleResolution: 'Bundler',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules/@types')],
        allowImportingTsExtensions: false,
        paths: {
          'tiered-conversation-store': [`${src}/index.ts`],
          'tiered-conversation-store/testing': [`${src}/testing.ts`],
          'tiered-conversation-store/*': [`${src}/integrations/*.ts`],
        },
      },
      files: ['prelude.d.ts', ...names],
    },
    null,
    2,
  ),
);
try {
  execFileSync(path.join(root, 'node_modules/typescript/bin/tsc'), ['-p', work], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
} catch (error) {
  const out = String(error.stdout ?? '') + String(error.stderr ?? '');
  for (const line of out.split('\n').filter(Boolean)) {
    const m = /snippet(\d+)\.ts\((\d+),(\d+)\): (.*)/.exec(line);
    if (!m) {
      problems.push(line);
      continue;
    }
    const block = blocks[Number(m[1])];
    problems.push(`${block.file}:${block.line + Number(m[2]) - 1}: ${m[4]}`);
  }
}
rmSync(work, { recursive: true, force: true });
if (problems.length > 0) {
  console.error(`check-docs: ${problems.length} problem(s):\n${problems.join('\n')}`);
  process.exit(1);
}
console.log(`check-docs: ${blocks.length} TypeScript snippets in ${files.length} files type-check; psql commands stop on errors`);
