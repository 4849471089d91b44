// The settings form's fields, from the shell's settings table (generated: SETTINGS,
// and each backend's section in BACKENDS): which fields the form shows and where, the
// control each gets, and the checks before a save. Nothing here lists a setting by
// hand; the shell checks again on save and has the last word.
import { BACKENDS, SETTINGS, type BackendKind, type SettingField, type SettingsView } from "../api";

export type SettingName = keyof SettingsView;
export type FieldErrors = Partial<Record<SettingName, string>>;
export type FieldValue = SettingField["value"];

/** Where a field sits: the top, its backend's section, sampling, the local API. */
export type Group = "general" | BackendKind | "sampling" | "api";

export interface FormField extends SettingField {
  name: SettingName;
  group: Group;
  /** The backend whose section holds it; null for the settings of no backend. */
  owner: BackendKind | null;
}

function place(field: SettingField, owner: BackendKind | null): FormField | null {
  const form = field.form;
  if (form === null) return null;
  const group: Group = form === "backend" ? (owner ?? "general") : form;
  return { ...field, name: field.name as SettingName, group, owner };
}

/** Every field the form shows, in the table's order. */
export const FORM_FIELDS: readonly FormField[] = [
  ...SETTINGS.map((f) => place(f, null)),
  ...BACKENDS.flatMap((b) => b.section.map((f) => place(f, b.kind))),
].filter((f): f is FormField => f !== null);

export const SETTING_NAMES: readonly SettingName[] = FORM_FIELDS.map((f) => f.name);

/** The groups in the order the form shows them. */
export const GROUPS: readonly Group[] = ["general", ...BACKENDS.map((b) => b.kind), "sampling", "api"];

export function formField(name: SettingName): FormField {
  const field = FORM_FIELDS.find((f) => f.name === name);
  if (!field) throw new Error(`no setting named ${name}`);
  return field;
}

/** The setting a shell error's `field` names, if the form shows it. */
export function settingName(field: string | null | undefined): SettingName | null {
  return field && (SETTING_NAMES as readonly string[]).includes(field) ? (field as SettingName) : null;
}

/** The line under a field: its help, with what `auto` means where it has a limit. */
export function helpOf(field: SettingField): string {
  const v = field.value;
  if (v.type === "autoOrCount" && v.autoMost !== null) {
    return `"auto": as many as fit beside the model (at most ${v.autoMost}). ${field.help}`;
  }
  return field.help;
}

const sentence = (words: string): string => `${words.charAt(0).toUpperCase()}${words.slice(1)}.`;

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

/**
 * What is wrong with `value` for `field`, or null. `inUse`: the field's section is the
 * one the chosen backend uses (its required fields must then be filled).
 */
export function checkField(field: FormField, value: unknown, inUse: boolean): string | null {
  const v = field.value;
  const text = typeof value === "string" ? value.trim() : null;
  const empty = value === null || text === "";
  if (empty) return field.required && inUse ? sentence(v.type === "url" ? `enter ${field.hint}` : field.hint) : null;
  switch (v.type) {
    case "backend":
      return BACKENDS.some((b) => b.kind === value) ? null : `Choose one of: ${BACKENDS.map((b) => b.label).join(", ")}.`;
    case "integer":
      return typeof value === "number" && Number.isInteger(value) && value >= v.min && value <= v.max
        ? null
        : `${field.label} must be a whole number from ${v.min} to ${v.max}.`;
    case "decimal": {
      const ok = typeof value === "number" && Number.isFinite(value) && (v.aboveMin ? value > v.min : value >= v.min) && value <= v.max;
      if (ok) return null;
      return v.aboveMin ? `${field.label} must be above ${v.min} and at most ${v.max}.` : `${field.label} must be between ${v.min} and ${v.max}.`;
    }
    case "autoOrCount": {
      const n = Number(text);
      const ok = text?.toLowerCase() === "auto" || (/^\d+$/.test(text ?? "") && n >= v.min && n <= v.max);
      return ok ? null : `Use "auto" or a whole number from ${v.min} to ${v.max}.`;
    }
    case "device":
      return /\s/.test(text ?? "") ? sentence(field.hint) : null;
    case "url":
      if (isHttpUrl(text ?? "")) return null;
      return inUse ? sentence(`enter ${field.hint}`) : "Not an http(s) URL.";
    case "token":
      return /\s/.test(text ?? "") ? `The ${field.label.toLowerCase()} must be one word, without spaces.` : null;
    default:
      return null;
  }
}

/** Every field's problem, by the field's name. */
export function validateSettings(s: SettingsView): FieldErrors {
  const errors: FieldErrors = {};
  for (const field of FORM_FIELDS) {
    const inUse = field.owner === null || field.owner === s.backend;
    const problem = checkField(field, s[field.name], inUse);
    if (problem !== null) errors[field.name] = problem;
  }
  return errors;
}
