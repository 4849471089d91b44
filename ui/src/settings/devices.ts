// The device picker's entries: "Auto (uses Vulkan0)", "CPU", then one per GPU with
// its description, free memory and what the fit planner says of the model on it.
import type { DeviceOption } from "../api";

export interface DeviceChoice {
  /** What the `device` setting takes: "auto", "cpu" or llama.cpp's name ("Vulkan0"). */
  value: string;
  label: string;
  /** The plan's reason, as a tooltip. */
  title: string;
}

const GIB = 1024 ** 3;

export function formatGiB(bytes: number): string {
  return `${(bytes / GIB).toFixed(1)} GiB`;
}

/** The planner's verdict for the model on a GPU, in a few words; "" without a model. */
export function verdictText(d: DeviceOption): string {
  const layers = d.nGpuLayers !== null && d.nLayersTotal !== null ? `${d.nGpuLayers}/${d.nLayersTotal} layers` : null;
  switch (d.verdict) {
    case "fits_on_gpu":
      return layers ? `fits: ${layers}` : "fits";
    case "partial_offload":
      return layers ? `partly fits: ${layers}` : "partly fits";
    case "cpu_only":
      return "no room: runs on the CPU";
    case "does_not_fit":
      return "does not fit";
    case null:
      return "";
  }
}

/** "Vulkan0 · NVIDIA GeForce RTX 4090 · 21.3 GiB free · fits: 19/19 layers". */
export function gpuLabel(d: DeviceOption): string {
  return [d.name, d.description, `${formatGiB(d.memoryFreeBytes)} free`, verdictText(d)].filter((p) => p !== "").join(" · ");
}

/** "Auto (uses Vulkan0)": the device auto picks now. */
export function autoLabel(devices: readonly DeviceOption[]): string {
  const picked = devices.find((d) => d.auto);
  if (!picked) return "Auto";
  return `Auto (uses ${picked.value === "cpu" ? "CPU" : picked.name})`;
}

const isCpu = (d: DeviceOption): boolean => d.value === "cpu";

/** The setting as the picker names it: "auto" and "cpu" in lower case, a device by its listed name. */
export function canonicalDevice(value: string, devices: readonly DeviceOption[]): string {
  const v = value.trim();
  const lower = v.toLowerCase();
  if (lower === "" || lower === "auto") return "auto";
  if (lower === "cpu") return "cpu";
  return devices.find((d) => d.value.toLowerCase() === lower)?.value ?? v;
}

/**
 * The picker's entries for `devices` with `selected` among them. A device the settings
 * name that is not listed (unplugged, its driver gone) stays choosable, marked so,
 * once the list is known (`listed`).
 */
export function deviceChoices(devices: readonly DeviceOption[], selected: string, listed = true): DeviceChoice[] {
  const cpu = devices.find(isCpu);
  const choices: DeviceChoice[] = [
    { value: "auto", label: autoLabel(devices), title: "A CUDA GPU, else a Vulkan GPU, else the CPU" },
    { value: "cpu", label: "CPU", title: cpu?.reason ?? "" },
    ...devices.filter((d) => !isCpu(d)).map((d) => ({ value: d.value, label: gpuLabel(d), title: d.reason ?? "" })),
  ];
  const current = canonicalDevice(selected, devices);
  if (!choices.some((c) => c.value === current)) {
    choices.push({ value: current, label: listed ? `${current} (not found)` : current, title: "" });
  }
  return choices;
}
