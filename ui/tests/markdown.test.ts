import { describe, expect, it } from "vitest";
import { codeForCopyButton, markdownToSafeHtml, renderMarkdownInto, sanitizeHtml } from "../src/chat/markdown";

function render(source: string): HTMLElement {
  const el = document.createElement("div");
  renderMarkdownInto(el, source);
  return el;
}

describe("markdown rendering", () => {
  it("renders ordinary markdown", () => {
    const el = render("# Title\n\nSome **bold** text and a [link](https://example.org).");
    expect(el.querySelector("h1")?.textContent).toBe("Title");
    expect(el.querySelector("strong")?.textContent).toBe("bold");
    expect(el.querySelector("a")?.getAttribute("href")).toBe("https://example.org");
  });

  it("never lets a script or an event handler through", () => {
    const hostile = [
      "<script>window.pwned = 1</script>",
      '<img src="x" onerror="window.pwned = 1">',
      '<div onclick="window.pwned=1">click</div>',
      "[click](javascript:window.pwned=1)",
      '<a href="javascript:alert(1)">a</a>',
      "<iframe src=\"https://evil.example\"></iframe>",
      '<svg onload="alert(1)"></svg>',
    ].join("\n\n");
    const el = render(hostile);
    expect(el.querySelector("script, iframe, img, svg")).toBeNull();
    for (const node of el.querySelectorAll("*")) {
      for (const attr of node.getAttributeNames()) expect(attr.startsWith("on")).toBe(false);
      expect(node.getAttribute("href") ?? "").not.toMatch(/^javascript:/i);
    }
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });

  it("shows HTML a model writes as text instead of markup", () => {
    const el = render("Use <b>bold</b> like this");
    expect(el.querySelector("b")).toBeNull();
    expect(el.textContent).toContain("<b>bold</b>");
  });

  it("sanitises HTML that reaches it directly (the DOMPurify layer)", () => {
    const html = sanitizeHtml(
      '<p style="color:red">ok</p><img src=x onerror="alert(1)"><a href="javascript:alert(1)" onmouseover="x()">l</a><script>1</script>',
    );
    const el = document.createElement("div");
    el.innerHTML = html;
    expect(el.querySelector("p")?.textContent).toBe("ok");
    expect(el.querySelector("img, script")).toBeNull();
    expect(el.querySelector("[style], [onmouseover]")).toBeNull();
    expect(el.querySelector("a")?.getAttribute("href") ?? "").not.toMatch(/javascript/i);
  });

  it("renders markdown to a string with no executable parts", () => {
    const html = markdownToSafeHtml("hi <img src=x onerror=alert(1)>");
    const el = document.createElement("div");
    el.innerHTML = html;
    expect(el.querySelector("img")).toBeNull();
  });

  it("highlights known languages and gives every code block a copy button", () => {
    const el = render("```rust\nfn main() { let x = 1; }\n```\n\n```\nplain text\n```");
    const blocks = el.querySelectorAll(".code-block");
    expect(blocks).toHaveLength(2);
    for (const block of blocks) {
      const button = block.querySelector('[data-action="copy-code"]');
      expect(button?.tagName).toBe("BUTTON");
    }
    const rust = blocks[0]!.querySelector("pre code")!;
    expect(rust.classList.contains("hljs")).toBe(true);
    expect(rust.classList.contains("language-rust")).toBe(true);
    expect(rust.querySelector(".hljs-keyword")?.textContent).toBe("fn");
    expect(blocks[0]!.querySelector(".code-lang")?.textContent).toBe("rust");
  });

  it("escapes code in an unknown language rather than guessing", () => {
    const el = render("```nosuchlang\n<script>alert(1)</script>\n```");
    const code = el.querySelector("pre code")!;
    expect(code.querySelector("script")).toBeNull();
    expect(code.textContent).toBe("<script>alert(1)</script>");
    expect(code.querySelector("[class^='hljs-']")).toBeNull();
  });

  it("copies the exact code text of its own block", () => {
    const el = render("```python\nprint('a')\n```\n\n```js\nconsole.log(2)\n```");
    const buttons = el.querySelectorAll('[data-action="copy-code"]');
    expect(codeForCopyButton(buttons[0]!)).toBe("print('a')");
    expect(codeForCopyButton(buttons[1]!)).toBe("console.log(2)");
  });
});
