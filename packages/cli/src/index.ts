export { up, type UpContext } from './up.js';
export { allocate, release, get, status, CommandError, type ClientContext } from './client-commands.js';
export { UsageError } from './args.js';
export { renderStatus, type StatusView } from './table.js';
