/* Figures drawn on canvases in the browser, one column per step of a review: a fixed y axis on
   the left, the columns in canvases side by side in a box that scrolls sideways, and under them
   each column's word, slanted. Hovering anywhere shows what is under the pointer in a tooltip.
   Every text is drawn with fillText or set as textContent: no text is read as markup.
   `numpy_lstm/static/inspect.js` uses it to draw the inspect page. */
var Figures = (function () {
  "use strict";
  var AXIS = 96;          // width of the y axis (px)
  var LABELS = 92;        // height of the words under the columns
  var LEFT = 54;          // room on the left for the first words' slanted labels
  var TILE = 4000;        // widest canvas (px): browsers cap a canvas's size
  var SLANT = -Math.PI / 3;
  var LONGEST = 16;       // characters of a word drawn under its column (the tooltip has all)
  var FONT = "12px sans-serif";
  var tip = null;

  function element(tag, className, parent, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function canvas(parent, width, height) {
    var c = element("canvas", null, parent);
    var ratio = window.devicePixelRatio || 1;
    c.width = Math.ceil(width * ratio);
    c.height = Math.ceil(height * ratio);
    c.style.width = width + "px";
    c.style.height = height + "px";
    var ctx = c.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.font = FONT;
    return { canvas: c, ctx: ctx };
  }

  function showTip(text, x, y) {
    if (!tip) tip = element("div", "tip", document.body);
    tip.textContent = text;
    tip.style.display = "block";
    var w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.max(0, x + 16 + w > window.innerWidth ? x - 16 - w : x + 16) + "px";
    tip.style.top = Math.max(0, y + 16 + h > window.innerHeight ? y - 16 - h : y + 16) + "px";
  }

  function hideTip() {
    if (tip) tip.style.display = "none";
  }

  function shortLabel(word) {
    return word.length > LONGEST ? word.slice(0, LONGEST - 1) + "\u2026" : word;
  }

  /* Columns of the given widths, laid out from LEFT: [{x, w}]. */
  function columns(widths) {
    var x = LEFT, out = [];
    for (var k = 0; k < widths.length; k++) {
      out.push({ x: x, w: widths[k] });
      x += widths[k];
    }
    return out;
  }

  /* The column under x, or -1 (cols sorted by x). */
  function columnAt(cols, x) {
    var lo = 0, hi = cols.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1, c = cols[mid];
      if (x < c.x) hi = mid - 1;
      else if (x >= c.x + c.w) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /* Draw a figure into host (emptied first). spec:
     cols: columns(...); labels: one text per column ("" for none); height: plot height (px);
     axis(ctx): draws the y axis, x from 0 to AXIS, the plot from y = 0 to height;
     draw(ctx, first, last): draws columns first..last (inclusive) at their x;
     hover(k, y): the tooltip's text for column k at height y of the plot, y null over the
     words (null: no tooltip);
     click(k, y): optional; extra(ctx, x0, x1): optional, draws under the labels. */
  function draw(host, spec) {
    host.textContent = "";
    var row = element("div", "figure-row", host);
    var axis = canvas(row, AXIS, spec.height + LABELS);
    spec.axis(axis.ctx);
    var box = element("div", "figure-scroll", row);
    var cols = spec.cols, last = cols[cols.length - 1];
    var width = last.x + last.w + 12;
    for (var x0 = 0; x0 < width; x0 += TILE) {
      tile(box, spec, x0, Math.min(width, x0 + TILE));
    }
    return box;
  }

  function tile(box, spec, x0, x1) {
    var cols = spec.cols, h = spec.height;
    var c = canvas(box, x1 - x0, h + LABELS), ctx = c.ctx;
    ctx.save();
    ctx.translate(-x0, 0);
    var first = Math.max(0, columnAt(cols, x0)), lastCol = columnAt(cols, x1 - 1);
    if (lastCol < 0) lastCol = cols.length - 1;
    spec.draw(ctx, first, lastCol);
    ctx.fillStyle = "#222";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    // A label reaches left of its column by up to LEFT: draw those whose text enters this canvas.
    for (var k = first; k < cols.length && cols[k].x < x1 + LEFT; k++) {
      if (!spec.labels[k]) continue;
      ctx.save();
      ctx.translate(cols[k].x + cols[k].w / 2, h + 6);
      ctx.rotate(SLANT);
      ctx.fillText(shortLabel(spec.labels[k]), 0, 0);
      ctx.restore();
    }
    if (spec.extra) spec.extra(ctx, x0, x1);
    ctx.restore();
    function at(e) {
      var r = c.canvas.getBoundingClientRect();
      return { k: columnAt(cols, e.clientX - r.left + x0), y: e.clientY - r.top };
    }
    c.canvas.addEventListener("mousemove", function (e) {
      var p = at(e);
      var text = p.k < 0 ? null : spec.hover(p.k, p.y < h ? p.y : null);
      if (text) showTip(text, e.clientX, e.clientY);
      else hideTip();
    });
    c.canvas.addEventListener("mouseleave", hideTip);
    if (spec.click) {
      c.canvas.addEventListener("click", function (e) {
        var p = at(e);
        if (p.k >= 0 && p.y < h) spec.click(p.k, p.y);
      });
    }
  }

  /* The y axis: ticks [{y, text}] right-aligned at the axis, and a title turned upright. */
  function yAxis(ctx, height, ticks, title) {
    ctx.fillStyle = "#222";
    ctx.strokeStyle = "#666";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.beginPath();
    ctx.moveTo(AXIS - 0.5, 0);
    ctx.lineTo(AXIS - 0.5, height);
    ctx.stroke();
    ticks.forEach(function (t) {
      ctx.fillText(t.text, AXIS - 7, t.y);
      ctx.beginPath();
      ctx.moveTo(AXIS - 4, t.y);
      ctx.lineTo(AXIS, t.y);
      ctx.stroke();
    });
    if (title) {
      ctx.save();
      ctx.translate(12, height / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center";
      ctx.fillText(title, 0, 0);
      ctx.restore();
    }
  }

  /* A colour scale: stops [[value, [r, g, b]], ...] in increasing value; colour(v) -> css. */
  function scale(stops) {
    function colour(v) {
      if (!(v === v)) return "#fff";
      if (v <= stops[0][0]) return css(stops[0][1]);
      for (var s = 1; s < stops.length; s++) {
        if (v <= stops[s][0]) {
          var a = stops[s - 1], b = stops[s], t = (v - a[0]) / (b[0] - a[0] || 1);
          return css(a[1].map(function (x, j) { return x + t * (b[1][j] - x); }));
        }
      }
      return css(stops[stops.length - 1][1]);
    }
    function css(rgb) {
      return "rgb(" + rgb.map(Math.round).join(",") + ")";
    }
    return { colour: colour, lo: stops[0][0], hi: stops[stops.length - 1][0] };
  }

  /* A legend of a colour scale into host: the bar and its values at both ends and the middle. */
  function legend(host, sc, what, digits) {
    host.textContent = "";
    var w = 260, c = canvas(host, w + 120, 36), ctx = c.ctx;
    for (var x = 0; x < w; x++) {
      ctx.fillStyle = sc.colour(sc.lo + (sc.hi - sc.lo) * (x + 0.5) / w);
      ctx.fillRect(60 + x, 4, 1, 12);
    }
    ctx.strokeStyle = "#666";
    ctx.strokeRect(59.5, 3.5, w + 1, 13);
    ctx.fillStyle = "#222";
    ctx.textBaseline = "top";
    [[0, sc.lo], [0.5, (sc.lo + sc.hi) / 2], [1, sc.hi]].forEach(function (p) {
      ctx.textAlign = p[0] === 0 ? "left" : p[0] === 1 ? "right" : "center";
      ctx.fillText(p[1].toFixed(digits), 60 + p[0] * w, 20);
    });
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    ctx.fillText(what, 54, 3);
    c.canvas.setAttribute("aria-label", what + " from " + sc.lo.toFixed(digits) + " to " + sc.hi.toFixed(digits));
  }

  /* A legend of lines or swatches: items [{colour, text, dashed}]. */
  function key(host, items) {
    host.textContent = "";
    items.forEach(function (item) {
      var entry = element("span", "key", host);
      var swatch = element("span", "swatch", entry);
      swatch.style.borderTop = "3px " + (item.dashed ? "dashed " : "solid ") + item.colour;
      if (item.fill) {
        swatch.style.background = item.fill;
        swatch.style.borderTop = "0";
      }
      element("span", null, entry, item.text);
    });
  }

  return { AXIS: AXIS, element: element, columns: columns, draw: draw, yAxis: yAxis, scale: scale,
           legend: legend, key: key };
})();
