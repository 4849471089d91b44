// Where the loaded model runs ("SmolLM2 on Vulkan0: 31/31 layers"), and the note the
// engine leaves when the model is not where the settings asked (the GPU had no room
// for the layers), told once per load rather than on every status update.
import type { AppStatus } from "./api";

/** The model and where it runs; null when no model is loaded. */
export function modelLine(status: AppStatus): string | null {
  if (status.model === null) return null;
  return status.placement ? `${status.model} ${status.placement.summary}` : status.model;
}

/**
 * A function that returns the placement note of a status the first time that note
 * comes for that model on that device, and null after (and when there is none).
 */
export function placementNotices(): (status: AppStatus) => string | null {
  const told = new Set<string>();
  return (status) => {
    const placement = status.placement;
    if (status.model === null || !placement?.note) return null;
    const key = JSON.stringify([status.model, placement.device, placement.note]);
    if (told.has(key)) return null;
    told.add(key);
    return `${status.model}: ${placement.note}`;
  };
}
