/**
 * Child-process entry: aedes started the documented way (`Aedes.createBroker()` +
 * `net.createServer(aedes.handle)`); given a folder, with aedes-persistence-level in it.
 *
 *   node aedes-server.js PORT [LEVEL_DIR]
 */
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { Aedes } from 'aedes';
import { Level } from 'level';

/** The package has no type declarations: its one export takes a Level database. */
type LevelPersistence = (db: Level<string, Buffer>) => object;

const port = Number(process.argv[2]);
const levelDir = process.argv[3];
const persistence = levelDir === undefined ? undefined : (createRequire(import.meta.url)('aedes-persistence-level') as LevelPersistence)(new Level(levelDir));
const aedes = await Aedes.createBroker(persistence === undefined ? {} : { persistence });
const server = createServer(aedes.handle);
server.listen(port, '127.0.0.1');
const stop = (): void => {
  server.close();
  aedes.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
