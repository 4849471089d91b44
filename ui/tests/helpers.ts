import type { AppStatus, DeviceOption } from "../src/api";
import type { FrameScheduler } from "../src/chat/coalescer";

/** A frame scheduler the test advances by hand. */
export function fakeFrames(): FrameScheduler & { tick(): void; pending: number } {
  let callbacks = new Map<number, () => void>();
  let next = 1;
  return {
    request(cb) {
      callbacks.set(next, cb);
      return next++;
    },
    cancel(handle) {
      callbacks.delete(handle);
    },
    tick() {
      const due = callbacks;
      callbacks = new Map();
      for (const cb of due.values()) cb();
    },
    get pending() {
      return callbacks.size;
    },
  };
}


export function status(overrides: Partial<AppStatus> = {}): AppStatus {
  return {
    activeBackend: "embedded",
    model: "qwen2.5-0.5b-instruct-q4_k_m",
    placement: null,
    ready: true,
    reason: null,
    loading: false,
    generating: false,
    historyError: null,
    lastDecodeTps: null,
    dbPath: "/tmp/hearth.db",
    session: null,
    api: { url: null, tokenRequired: false, running: 0, error: null },
    ...overrides,
  };
}

/** A device as `list_devices` gives it: a GPU unless `over` says otherwise. */
export function device(over: Partial<DeviceOption> = {}): DeviceOption {
  return {
    value: "Vulkan0",
    name: "Vulkan0",
    description: "NVIDIA GeForce RTX 4090",
    backend: "Vulkan",
    kind: "gpu",
    memoryTotalBytes: 24 * 1024 ** 3,
    memoryFreeBytes: 21.3 * 1024 ** 3,
    auto: true,
    verdict: "fits_on_gpu",
    nGpuLayers: 19,
    nLayersTotal: 19,
    reason: "every layer fits in the GPU's free memory",
    ...over,
  };
}

/** The CPU as `list_devices` gives it. */
export function cpuDevice(over: Partial<DeviceOption> = {}): DeviceOption {
  return device({
    value: "cpu",
    name: "CPU",
    description: "AMD Ryzen 9 7950X 16-Core Processor",
    backend: "CPU",
    kind: "cpu",
    memoryTotalBytes: 64 * 1024 ** 3,
    memoryFreeBytes: 40 * 1024 ** 3,
    auto: false,
    verdict: "cpu_only",
    nGpuLayers: 0,
    reason: "runs on the CPU",
    ...over,
  });
}
