/** @headstart/cli — the `headstart` command (bin/headstart.js runs main). */
export { main, EXIT } from './main';
