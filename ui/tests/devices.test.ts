import { describe, expect, it } from "vitest";
import { autoLabel, canonicalDevice, deviceChoices, formatGiB, gpuLabel, verdictText } from "../src/settings/devices";
import { cpuDevice, device } from "./helpers";

describe("device picker labels", () => {
  it("names a GPU, its free memory and what the planner says of the model on it", () => {
    expect(gpuLabel(device())).toBe("Vulkan0 · NVIDIA GeForce RTX 4090 · 21.3 GiB free · fits: 19/19 layers");
    expect(gpuLabel(device({ value: "CUDA0", name: "CUDA0", verdict: "partial_offload", nGpuLayers: 7, memoryFreeBytes: 2 * 1024 ** 3 }))).toBe(
      "CUDA0 · NVIDIA GeForce RTX 4090 · 2.0 GiB free · partly fits: 7/19 layers",
    );
    // Without a model (none chosen, or unreadable) there is no verdict to show.
    expect(gpuLabel(device({ verdict: null, nGpuLayers: null, nLayersTotal: null }))).toBe(
      "Vulkan0 · NVIDIA GeForce RTX 4090 · 21.3 GiB free",
    );
  });

  it("words every verdict", () => {
    expect(verdictText(device())).toBe("fits: 19/19 layers");
    expect(verdictText(device({ nLayersTotal: null }))).toBe("fits");
    expect(verdictText(device({ verdict: "partial_offload", nGpuLayers: 3 }))).toBe("partly fits: 3/19 layers");
    expect(verdictText(device({ verdict: "cpu_only", nGpuLayers: 0 }))).toBe("no room: runs on the CPU");
    expect(verdictText(device({ verdict: "does_not_fit" }))).toBe("does not fit");
    expect(verdictText(device({ verdict: null }))).toBe("");
    expect(formatGiB(1536 * 1024 ** 2)).toBe("1.5 GiB");
  });

  it("says which device auto uses", () => {
    expect(autoLabel([cpuDevice(), device()])).toBe("Auto (uses Vulkan0)");
    expect(autoLabel([cpuDevice({ auto: true })])).toBe("Auto (uses CPU)");
    expect(autoLabel([])).toBe("Auto");
  });

  it("puts auto and the CPU first, then each GPU", () => {
    const listed = [cpuDevice(), device(), device({ value: "Vulkan1", name: "Vulkan1", description: "llvmpipe (LLVM 19.1.7, 256 bits)", kind: "cpu", auto: false })];
    const choices = deviceChoices(listed, "auto");
    expect(choices.map((c) => c.value)).toEqual(["auto", "cpu", "Vulkan0", "Vulkan1"]);
    expect(choices.map((c) => c.label)).toEqual([
      "Auto (uses Vulkan0)",
      "CPU",
      "Vulkan0 · NVIDIA GeForce RTX 4090 · 21.3 GiB free · fits: 19/19 layers",
      "Vulkan1 · llvmpipe (LLVM 19.1.7, 256 bits) · 21.3 GiB free · fits: 19/19 layers",
    ]);
    expect(choices[1]!.title).toBe("runs on the CPU");
  });

  it("keeps a device the settings name that is not listed", () => {
    expect(deviceChoices([cpuDevice({ auto: true })], "CUDA1").map((c) => c.label)).toEqual([
      "Auto (uses CPU)",
      "CPU",
      "CUDA1 (not found)",
    ]);
    // Before the list has come, nothing is known to be missing.
    expect(deviceChoices([], "CUDA1", false).map((c) => c.label)).toEqual(["Auto", "CPU", "CUDA1"]);
  });

  it("reads the setting as the picker names it", () => {
    const listed = [cpuDevice(), device()];
    expect(canonicalDevice(" AUTO ", listed)).toBe("auto");
    expect(canonicalDevice("", listed)).toBe("auto");
    expect(canonicalDevice("Cpu", listed)).toBe("cpu");
    expect(canonicalDevice("vulkan0", listed)).toBe("Vulkan0");
    expect(canonicalDevice("cuda0", listed)).toBe("cuda0");
  });
});
