// A small, safe Markdown renderer and code highlighter for the chat (no library, no build step).
//
// Safety: model output is untrusted. Every piece of text is HTML-escaped before it is put in the
// page; the renderer only adds its own fixed tags around escaped text, and a link is made only
// for an http(s) URL (escaped, so it cannot leave its attribute), opened with rel="noopener".
// What it knows: paragraphs (single newlines kept as line breaks), # headings, - * + and 1. lists,
// > quotes, --- rules, ``` and ~~~ fenced code blocks (an unclosed one is code up to the end, as
// while a reply streams), `code`, **bold**, __bold__, *italic*, _italic_ and [text](http://url).
"use strict";

const DmrMarkdown = (() => {
  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

  // -- inline ------------------------------------------------------------------------------------

  function emphasis(html) {
    return html
      .replace(/\*\*(?=\S)([^*\n]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/__(?=\S)([^_\n]*?\S)__/g, "<strong>$1</strong>")
      .replace(/(^|[^*\w])\*(?=\S)([^*\n]*?\S)\*(?![*\w])/g, "$1<em>$2</em>")
      .replace(/(^|[^_\w])_(?=\S)([^_\n]*?\S)_(?![_\w])/g, "$1<em>$2</em>");
  }

  function link(url, label) {
    return `<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${emphasis(escapeHtml(label))}</a>`;
  }

  // Code spans and links are set aside first (as \u0000n\u0000), so emphasis never reaches into them.
  function renderInline(raw) {
    const kept = [];
    const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
    const text = raw
      .replace(/\u0000/g, "")
      .replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${escapeHtml(code)}</code>`))
      .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s()]+)\)/g, (_, label, url) => keep(link(url, label)));
    return emphasis(escapeHtml(text)).replace(/\u0000(\d+)\u0000/g, (_, i) => kept[Number(i)]);
  }

  // -- code highlighting -------------------------------------------------------------------------

  const KEYWORDS = new Set((
    "and as assert async await break case catch class const continue def default del do elif else " +
    "enum except export extends false False finally fn for from func function go if impl import in " +
    "interface is lambda let loop match mod mut new nil None not null or package pass pub raise " +
    "return self static struct super switch this throw true True try type typeof use var void " +
    "while with yield int float str bool char long double unsigned string echo fi then done esac local"
  ).split(" "));
  // Groups: 1 comment, 2 string, 3 number, 4 word (a keyword or not).
  const HASH_TOKENS = /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|(\b\d+(?:\.\d+)?\b)|([A-Za-z_]\w*)/g;
  const SLASH_TOKENS = /(\/\/[^\n]*|\/\*[\s\S]*?\*\/)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_$][\w$]*)/g;
  const HASH_COMMENT_LANGUAGES = new Set(["python", "py", "sh", "bash", "shell", "zsh", "console", "ruby", "rb",
    "yaml", "yml", "toml", "r", "perl", "dockerfile", "makefile", "make", "ini", "conf"]);

  function tokensFor(language, code) {
    if (HASH_COMMENT_LANGUAGES.has(language)) return HASH_TOKENS;
    if (language) return SLASH_TOKENS;
    return /^\s*(def|import|from|class)\s/m.test(code) ? HASH_TOKENS : SLASH_TOKENS; // unlabelled: guess Python
  }

  function highlight(code, language) {
    const tokens = tokensFor((language || "").toLowerCase(), code);
    let html = "";
    let last = 0;
    for (const match of code.matchAll(tokens)) {
      const kind = match[1] ? "comment" : match[2] ? "string" : match[3] ? "number"
        : KEYWORDS.has(match[0]) ? "keyword" : null;
      html += escapeHtml(code.slice(last, match.index));
      html += kind ? `<span class="tok-${kind}">${escapeHtml(match[0])}</span>` : escapeHtml(match[0]);
      last = match.index + match[0].length;
    }
    return html + escapeHtml(code.slice(last));
  }

  // -- blocks ------------------------------------------------------------------------------------

  const FENCE = /^\s*(```+|~~~+)\s*([\w+#.-]*)\s*$/;
  const HEADING = /^(#{1,6})\s+(.+?)\s*#*\s*$/;
  const LIST_ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const QUOTE = /^\s*>\s?(.*)$/;
  const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
  const startsBlock = (line) => FENCE.test(line) || HEADING.test(line) || LIST_ITEM.test(line) ||
    QUOTE.test(line) || RULE.test(line) || !line.trim();

  function codeBlock(lines, start) {
    const [, fence, language] = lines[start].match(FENCE);
    let end = start + 1;
    while (end < lines.length && !lines[end].trim().startsWith(fence)) end++;
    const code = lines.slice(start + 1, end).join("\n");
    const label = language ? ` data-language="${escapeHtml(language)}"` : "";
    const html = `<pre${label}><code class="code-block">${highlight(code, language)}</code></pre>`;
    return [html, end + 1];
  }

  function list(lines, start) {
    const ordered = /\d/.test(lines[start].match(LIST_ITEM)[1]);
    const items = [];
    let i = start;
    for (; i < lines.length; i++) {
      const item = lines[i].match(LIST_ITEM);
      if (item) items.push(item[2]);
      else if (lines[i].trim() && !startsBlock(lines[i]) && items.length) items[items.length - 1] += "\n" + lines[i].trim();
      else break;
    }
    const tag = ordered ? "ol" : "ul";
    const body = items.map((text) => `<li>${renderInline(text).replace(/\n/g, "<br>")}</li>`).join("");
    return [`<${tag}>${body}</${tag}>`, i];
  }

  function quote(lines, start) {
    let i = start;
    const quoted = [];
    for (; i < lines.length && QUOTE.test(lines[i]); i++) quoted.push(lines[i].match(QUOTE)[1]);
    return [`<blockquote>${render(quoted.join("\n"))}</blockquote>`, i];
  }

  function paragraph(lines, start) {
    let i = start + 1;
    while (i < lines.length && !startsBlock(lines[i])) i++;
    const text = lines.slice(start, i).map((line) => renderInline(line.trim())).join("<br>");
    return [`<p>${text}</p>`, i];
  }

  function block(lines, i) {
    const line = lines[i];
    if (FENCE.test(line)) return codeBlock(lines, i);
    if (RULE.test(line)) return ["<hr>", i + 1];
    const heading = line.match(HEADING);
    if (heading) {
      const level = Math.min(heading[1].length + 2, 6); // the page's own h1 and h2 stay above a reply's
      return [`<h${level}>${renderInline(heading[2])}</h${level}>`, i + 1];
    }
    if (LIST_ITEM.test(line)) return list(lines, i);
    if (QUOTE.test(line)) return quote(lines, i);
    return paragraph(lines, i);
  }

  /** Markdown source → HTML in which every character of the source is escaped. */
  function render(source) {
    const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
    const html = [];
    for (let i = 0; i < lines.length;) {
      if (!lines[i].trim()) { i++; continue; }
      const [piece, next] = block(lines, i);
      html.push(piece);
      i = next;
    }
    return html.join("\n");
  }

  return { render, highlight, escapeHtml };
})();
