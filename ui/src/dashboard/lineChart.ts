// A small line chart on <canvas>: a few series over a fixed time window, a
// fixed y range, gaps where polling paused. Drawn only when new data arrives.
import type { Sample } from "./ringBuffer";

export interface ChartSeries {
  points: Sample[];
  /** A CSS colour or a custom property name such as "--chart-1". */
  color: string;
}

export interface ChartOptions {
  windowMs: number;
  now: number;
  yMax: number;
  /** A gap longer than this between samples breaks the line. */
  gapMs?: number;
}

function resolveColor(el: Element, color: string): string {
  if (!color.startsWith("--")) return color;
  return getComputedStyle(el).getPropertyValue(color).trim() || "#888";
}

export function drawLineChart(canvas: HTMLCanvasElement, series: ChartSeries[], opts: ChartOptions): void {
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 80;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);

  ctx.strokeStyle = resolveColor(canvas, "--grid");
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (const f of [0.25, 0.5, 0.75]) {
    const y = Math.round(height * f) + 0.5;
    ctx.moveTo(0, y);
    ctx.lineTo(width, y);
  }
  ctx.stroke();

  const from = opts.now - opts.windowMs;
  const gap = opts.gapMs ?? 3000;
  const x = (t: number): number => ((t - from) / opts.windowMs) * width;
  const y = (v: number): number => height - (Math.min(Math.max(v, 0), opts.yMax) / opts.yMax) * (height - 2) - 1;

  ctx.lineWidth = 1.5;
  ctx.lineJoin = "round";
  for (const s of series) {
    ctx.strokeStyle = resolveColor(canvas, s.color);
    ctx.beginPath();
    let previous: Sample | null = null;
    for (const p of s.points) {
      if (previous === null || p.t - previous.t > gap) ctx.moveTo(x(p.t), y(p.v));
      else ctx.lineTo(x(p.t), y(p.v));
      previous = p;
    }
    ctx.stroke();
  }
}
