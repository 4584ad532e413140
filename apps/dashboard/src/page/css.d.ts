/** esbuild bundles style sheets imported from the page's script into app.css. */
declare module '*.css';
