/**
 * The alert webview's page: a strict Content Security Policy (nothing by
 * default; our one script by nonce from the extension's dist folder; our
 * styles by nonce, and the codicon font's stylesheet from dist/), VS Code's
 * theme colours through its CSS variables and its icons as codicons. The
 * page holds no data: the script renders what the extension posts, as text.
 */
export interface AlertsHtmlInput {
  /** webview.cspSource */
  cspSource: string;
  /** webview.asWebviewUri(dist/webview.js) */
  scriptUri: string;
  /** webview.asWebviewUri(dist/codicons/codicon.css): VS Code's icon font, shipped with us (a webview cannot reach the workbench's). */
  codiconsUri: string;
  nonce: string;
}

export function alertsHtml({ cspSource, scriptUri, codiconsUri, nonce }: AlertsHtmlInput): string {
  const csp = [`default-src 'none'`, `script-src 'nonce-${nonce}'`, `style-src 'nonce-${nonce}' ${cspSource}`, `img-src ${cspSource}`, `font-src ${cspSource}`].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>COI Threat Alerts</title>
<link rel="stylesheet" href="${codiconsUri}">
<style nonce="${nonce}">${STYLES}</style>
</head>
<body>
<header class="bar" role="search">
  <h1 id="title">Threat alerts</h1>
  <label>Sandbox <select id="filter-sandbox" aria-label="Filter by sandbox"></select></label>
  <label>Severity <select id="filter-level" aria-label="Filter by severity"></select></label>
  <span id="count" role="status" aria-live="polite"></span>
</header>
<main>
  <p id="empty" hidden>No threat alerts yet.</p>
  <ol id="timeline" aria-label="Threat alerts, newest first"></ol>
</main>
<script nonce="${nonce}" src="${scriptUri}"></script>
</body>
</html>`;
}

/** A fresh nonce per page load. */
export function makeNonce(random: (n: number) => Uint8Array): string {
  return Buffer.from(random(24)).toString('base64').replace(/[^A-Za-z0-9]/g, '');
}

const STYLES = `
body { color: var(--vscode-foreground); background: var(--vscode-editor-background); font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); padding: 0 16px 16px; }
.bar { position: sticky; top: 0; background: var(--vscode-editor-background); display: flex; flex-wrap: wrap; gap: 12px; align-items: center; padding: 8px 0; border-bottom: 1px solid var(--vscode-panel-border, transparent); z-index: 1; }
h1 { font-size: 1.2em; margin: 0 12px 0 0; }
select { background: var(--vscode-dropdown-background); color: var(--vscode-dropdown-foreground); border: 1px solid var(--vscode-dropdown-border, transparent); padding: 2px 4px; margin-left: 4px; }
#count { color: var(--vscode-descriptionForeground); }
ol { list-style: none; margin: 0; padding: 0; }
li.event { border-left: 4px solid var(--vscode-descriptionForeground); margin: 10px 0; padding: 6px 10px; background: var(--vscode-editorWidget-background, transparent); }
li.event:focus-within { outline: 1px solid var(--vscode-focusBorder); }
li.level-critical { border-left-color: var(--vscode-errorForeground); }
li.level-high { border-left-color: var(--vscode-editorError-foreground, var(--vscode-errorForeground)); }
li.level-warning { border-left-color: var(--vscode-editorWarning-foreground); }
li.level-info { border-left-color: var(--vscode-editorInfo-foreground, var(--vscode-descriptionForeground)); }
.head { display: flex; flex-wrap: wrap; gap: 8px; align-items: baseline; }
.codicon { vertical-align: text-bottom; margin-right: 4px; }
button .codicon { margin-right: 4px; font-size: 14px; }
.badge { font-weight: bold; font-size: 0.85em; padding: 0 6px; border-radius: 3px; color: var(--vscode-badge-foreground); background: var(--vscode-badge-background); }
.level-critical .badge, .level-high .badge { color: var(--vscode-editor-background); background: var(--vscode-errorForeground); }
.level-warning .badge { color: var(--vscode-editor-background); background: var(--vscode-editorWarning-foreground); }
.title { font-weight: bold; }
.meta, .did { color: var(--vscode-descriptionForeground); }
.summary { margin: 4px 0; }
details { margin: 4px 0; }
summary { cursor: pointer; }
summary:focus-visible, button:focus-visible, select:focus-visible { outline: 1px solid var(--vscode-focusBorder); outline-offset: 2px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 6px 0; }
dt { color: var(--vscode-descriptionForeground); }
dd { margin: 0; font-family: var(--vscode-editor-font-family); white-space: pre-wrap; word-break: break-all; }
ol.chain { list-style: none; padding: 0; margin: 0; }
.actions { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }
button { font-family: inherit; font-size: inherit; color: var(--vscode-button-foreground); background: var(--vscode-button-background); border: 1px solid var(--vscode-button-border, transparent); padding: 3px 10px; cursor: pointer; }
button:hover { background: var(--vscode-button-hoverBackground); }
button.secondary { color: var(--vscode-button-secondaryForeground); background: var(--vscode-button-secondaryBackground); }
button.link { color: var(--vscode-textLink-foreground); background: none; border: none; padding: 3px 0; text-decoration: underline; }
`;
