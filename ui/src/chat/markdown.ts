// Model output → safe DOM: marked parses, raw HTML is shown as text, DOMPurify
// sanitises what is left (links, code), code blocks get highlighting and a copy
// button. Nothing here attaches listeners: the message list handles
// `data-action="copy-code"` clicks by delegation.
import DOMPurify from "dompurify";
import { Marked } from "marked";
import { escapeHtml, highlightCode, normaliseLanguage } from "./highlight";

const marked = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    code({ text, lang }) {
      const language = normaliseLanguage(lang);
      const { html, language: known } = highlightCode(text, language);
      const cls = known ? `hljs language-${known}` : "hljs";
      const label = known ?? language;
      return `<pre data-lang="${escapeHtml(label)}"><code class="${cls}">${html}</code></pre>\n`;
    },
    // A model that writes HTML means it as text to read, not markup to run.
    html({ text }) {
      return escapeHtml(text);
    },
    // Offline app under CSP `default-src 'self'`: remote images cannot load.
    image({ href, text }) {
      return `<span class="md-image">[image: ${escapeHtml(text || href)}]</span>`;
    },
  },
});

const PURIFY_CONFIG = {
  FORBID_TAGS: ["style", "img", "svg", "math", "form", "input", "button", "textarea", "select", "iframe", "video", "audio"],
  FORBID_ATTR: ["style"],
  ALLOW_DATA_ATTR: false,
  ADD_ATTR: ["data-lang"],
};

/** The second line of defence, for whatever the markdown renderer lets through. */
export function sanitizeHtml(html: string): string {
  return DOMPurify.sanitize(html, PURIFY_CONFIG);
}

export function markdownToSafeHtml(source: string): string {
  return sanitizeHtml(marked.parse(source, { async: false }));
}

/** Renders markdown into `target` (replacing its content) and decorates code blocks. */
export function renderMarkdownInto(target: HTMLElement, source: string): void {
  target.innerHTML = markdownToSafeHtml(source);
  for (const a of target.querySelectorAll("a")) {
    a.setAttribute("rel", "noopener noreferrer");
    if (a.href) a.title = a.getAttribute("href") ?? "";
  }
  for (const pre of target.querySelectorAll("pre")) decorateCodeBlock(pre);
}

function decorateCodeBlock(pre: HTMLPreElement): void {
  const wrapper = document.createElement("div");
  wrapper.className = "code-block";
  const head = document.createElement("div");
  head.className = "code-head";
  const label = document.createElement("span");
  label.className = "code-lang";
  label.textContent = pre.dataset.lang ?? "";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  copy.dataset.action = "copy-code";
  copy.dataset.testid = "copy-code";
  copy.textContent = "Copy";
  head.append(label, copy);
  pre.replaceWith(wrapper);
  wrapper.append(head, pre);
}

/** The code text of the block a copy button belongs to. */
export function codeForCopyButton(button: Element): string | null {
  const code = button.closest(".code-block")?.querySelector("pre code");
  return code ? (code.textContent ?? "") : null;
}

export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through: WebKitGTK may refuse the async clipboard outside a gesture
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
