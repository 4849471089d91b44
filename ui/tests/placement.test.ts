import { describe, expect, it } from "vitest";
import type { PlacementView } from "../src/api";
import { modelLine, placementNotices } from "../src/placement";
import { status } from "./helpers";

const onGpu: PlacementView = { device: "Vulkan0", gpuLayers: 31, layersTotal: 31, summary: "on Vulkan0: 31/31 layers", note: null };
const squeezed: PlacementView = {
  device: "Vulkan0",
  gpuLayers: 12,
  layersTotal: 31,
  summary: "on Vulkan0: 12/31 layers (the rest on CPU)",
  note: "Vulkan0 had room for 12 of the 31 layers asked for",
};

describe("where the model runs", () => {
  it("follows the model's name", () => {
    expect(modelLine(status({ model: "SmolLM2-135M-Instruct-Q4_1", placement: onGpu }))).toBe(
      "SmolLM2-135M-Instruct-Q4_1 on Vulkan0: 31/31 layers",
    );
    expect(modelLine(status({ model: "llama3.2:1b", placement: null }))).toBe("llama3.2:1b");
    expect(modelLine(status({ model: null }))).toBeNull();
  });

  it("tells a placement note once per model, device and note", () => {
    const note = placementNotices();
    expect(note(status({ placement: onGpu }))).toBeNull();
    const told = note(status({ model: "m", placement: squeezed }));
    expect(told).toBe("m: Vulkan0 had room for 12 of the 31 layers asked for");
    expect(note(status({ model: "m", placement: squeezed, generating: true }))).toBeNull();
    expect(note(status({ model: "other", placement: squeezed }))).not.toBeNull();
    expect(note(status({ model: null, placement: squeezed }))).toBeNull();
  });
});
