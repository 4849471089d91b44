// jsdom has no canvas: charts draw nothing here (drawLineChart handles a null
// context), and tests that check drawing install their own fake context.
HTMLCanvasElement.prototype.getContext = (() => null) as typeof HTMLCanvasElement.prototype.getContext;
