import { parseArgs } from 'node:util';
import { generateKeyFiles } from '../../keys/index.ts';
import { UsageError, output } from '../common.ts';

export const KEYGEN_HELP = `usage: tufoci keygen <name> [--type ed25519|ecdsa-p256] [--json]

Writes <name>.key (PKCS#8 PEM, mode 0600; never overwritten) and <name>.pub
(TUF key JSON), and prints the key id.`;

export async function keygen(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { type: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) return console.log(KEYGEN_HELP);
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw new UsageError(`keygen takes one name\n\n${KEYGEN_HELP}`);
  const type = values.type ?? 'ed25519';
  if (type !== 'ed25519' && type !== 'ecdsa-p256') throw new UsageError(`--type must be ed25519 or ecdsa-p256, got "${type}"`);
  const out = output(values.json ?? false);
  const w = await generateKeyFiles(name, type);
  out.say(`${w.keyid}  ${type}\n  private: ${w.privatePath} (0600)\n  public:  ${w.publicPath}`);
  out.result({ keyid: w.keyid, type, private: w.privatePath, public: w.publicPath });
}
