import { describe, expect, it } from "vitest";
// The generated bindings as text: the ErrorCode union exactly as the shell exports it.
import bindings from "../src/bindings.ts?raw";
import { actionFor, ERROR_ACTIONS } from "../src/chat/errors";

/** The string literals of `export type ErrorCode = …` in the generated bindings. */
function generatedErrorCodes(): string[] {
  const start = bindings.indexOf("export type ErrorCode =");
  if (start < 0) throw new Error("bindings.ts has no ErrorCode union: regenerate the bindings");
  // The union runs to the next declaration (specta ends it without a semicolon).
  const end = bindings.indexOf("\nexport ", start + 1);
  const declaration = bindings.slice(start, end < 0 ? undefined : end);
  // Only the literals: the doc comments between them may quote words too.
  const union = declaration.replace(/\/\*[\s\S]*?\*\//g, "");
  return [...union.matchAll(/"([a-z0-9_]+)"/g)].map((m) => m[1] ?? "");
}

describe("error codes", () => {
  it("gives every code in the generated ErrorCode union an action", () => {
    const codes = generatedErrorCodes();
    expect(codes.length).toBeGreaterThan(10);
    for (const code of codes) {
      expect(Object.hasOwn(ERROR_ACTIONS, code), `${code} has no action`).toBe(true);
    }
  });

  it("lists no code that nothing sends", () => {
    // The Record's keys are exactly the ErrorCode union (TypeScript checks it at
    // compile time); this checks the same at run time against the generated file.
    expect(Object.keys(ERROR_ACTIONS).sort()).toEqual(generatedErrorCodes().sort());
    for (const gone of ["out_of_memory", "busy_generating"]) {
      expect(Object.hasOwn(ERROR_ACTIONS, gone), gone).toBe(false);
    }
  });

  it("answers every action with a button or none", () => {
    for (const code of generatedErrorCodes()) {
      expect(["settings", "retry", null]).toContain(actionFor(code as keyof typeof ERROR_ACTIONS));
    }
  });
});
