// Copies the SDK to clients/web/sdk/consult.js, where the hub serves it at
// /sdk/consult.js for the web console and patient app. The copy is committed;
// test/sdk-copy.test.js fails when it is out of date.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, '..', 'src', 'consult.js');
const target = join(here, '..', '..', 'web', 'sdk', 'consult.js');
mkdirSync(dirname(target), { recursive: true });
copyFileSync(source, target);
console.log(`copied ${source} -> ${target}`);
