/* The figures of a `numpy-lstm inspect` page (numpy_lstm/report.py says what each one shows),
   drawn with `Figures` from the numbers the page carries in its "inspect-data" element. */
(function () {
  "use strict";
  var F = Figures;
  var DATA = JSON.parse(document.getElementById("inspect-data").textContent);
  var WORDS = DATA.words, N = WORDS.length, T = DATA.steps, PAD = T - N;
  var GREEN = "#1a9850", RED = "#d73027";
  var STATES = ["i", "f", "g", "o", "c", "h"];
  var NAMES = { i: "input gate i", f: "forget gate f", g: "candidate g", o: "output gate o",
                c: "cell state c", h: "output h" };
  var COLOURS = { i: "#4477aa", f: "#66ccee", g: "#228833", o: "#ccbb44", c: "#ee6677", h: "#aa3377" };
  var SERIES = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"];
  // Gates lie in [0, 1] (a sequential scale); g and h in [-1, 1], c anywhere (diverging, white at 0).
  var GATE = F.scale([[0, [68, 1, 84]], [0.25, [59, 82, 139]], [0.5, [33, 145, 140]],
                      [0.75, [94, 201, 98]], [1, [253, 231, 37]]]);

  function diverging(m) {
    return F.scale([[-m, [33, 102, 172]], [0, [247, 247, 247]], [m, [178, 24, 43]]]);
  }

  /* Base64 of little-endian float32s -> Float32Array. */
  function floats(text) {
    var bytes = atob(text), view = new Uint8Array(bytes.length);
    for (var k = 0; k < bytes.length; k++) view[k] = bytes.charCodeAt(k);
    return new Float32Array(view.buffer);
  }

  function largest(values) {
    var m = 0;
    for (var k = 0; k < values.length; k++) m = Math.max(m, Math.abs(values[k]));
    return m;
  }

  /* One column per word, wide enough for its slanted label, wider when the review is short. */
  function wordColumns(host) {
    var room = (host.clientWidth || 900) - F.AXIS - 80;
    var w = Math.max(18, Math.min(48, Math.floor(room / N))), widths = [];
    for (var k = 0; k < N; k++) widths.push(w);
    return F.columns(widths);
  }

  function wordLine(k) {
    return "step " + (PAD + k + 1) + " of " + T + ", word " + (k + 1) + " of " + N + ": \u201c" + WORDS[k] + "\u201d";
  }

  function signed(v) {
    return (v >= 0 ? "+" : "") + v.toFixed(4);
  }

  function centre(col) {
    return col.x + col.w / 2;
  }

  function hline(ctx, cols, a, b, y, colour, dash) {
    ctx.strokeStyle = colour;
    ctx.setLineDash(dash || []);
    ctx.beginPath();
    ctx.moveTo(cols[a].x, y);
    ctx.lineTo(cols[b].x + cols[b].w, y);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  /* A line through the columns' centres, broken where a value is missing or not drawable. */
  function polyline(ctx, cols, a, b, value, y, colour, dash) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.setLineDash(dash || []);
    ctx.beginPath();
    var open = false;
    for (var k = Math.max(0, a - 1); k <= Math.min(cols.length - 1, b + 1); k++) {
      var v = value(k);
      if (v === null) { open = false; continue; }
      if (open) ctx.lineTo(centre(cols[k]), y(v));
      else ctx.moveTo(centre(cols[k]), y(v));
      open = true;
    }
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.lineWidth = 1;
  }

  function running(host) {
    var p = DATA.running, H = 170, cols = wordColumns(host);
    function y(v) { return 8 + (1 - v) * (H - 16); }
    F.draw(host, {
      cols: cols, labels: WORDS, height: H,
      axis: function (ctx) {
        F.yAxis(ctx, H, [0, 0.25, 0.5, 0.75, 1].map(function (v) { return { y: y(v), text: v.toFixed(2) }; }),
                "P(positive)");
      },
      draw: function (ctx, a, b) {
        [0, 0.25, 0.75, 1].forEach(function (v) { hline(ctx, cols, a, b, y(v), "#eee"); });
        hline(ctx, cols, a, b, y(0.5), "#999", [4, 3]);
        polyline(ctx, cols, a, b, function (k) { return p[k]; }, y, "#333");
        for (var k = a; k <= b; k++) {
          ctx.fillStyle = p[k] > 0.5 ? GREEN : RED;
          ctx.beginPath();
          ctx.arc(centre(cols[k]), y(p[k]), 3.5, 0, 2 * Math.PI);
          ctx.fill();
        }
      },
      hover: function (k) { return wordLine(k) + "\nP(positive) after it = " + p[k].toFixed(4); }
    });
    F.key(document.getElementById("running-key"), [
      { colour: GREEN, text: "above 0.5: leaning positive" }, { colour: RED, text: "0.5 or below: leaning negative" },
      { colour: "#999", text: "0.5", dashed: true }]);
  }

  function bars(host, values, what) {
    var H = 130, cols = wordColumns(host), m = largest(values) || 1;
    function y(v) { return H / 2 - v / m * (H / 2 - 8); }
    F.draw(host, {
      cols: cols, labels: WORDS, height: H,
      axis: function (ctx) {
        F.yAxis(ctx, H, [{ y: y(m), text: "+" + m.toPrecision(3) }, { y: y(0), text: "0" },
                         { y: y(-m), text: "-" + m.toPrecision(3) }], what);
      },
      draw: function (ctx, a, b) {
        hline(ctx, cols, a, b, y(0), "#666");
        for (var k = a; k <= b; k++) {
          ctx.fillStyle = values[k] > 0 ? GREEN : RED;
          var top = Math.min(y(0), y(values[k]));
          ctx.fillRect(cols[k].x + cols[k].w * 0.15, top, cols[k].w * 0.7, Math.abs(y(values[k]) - y(0)));
        }
      },
      hover: function (k) { return wordLine(k) + "\n" + what + " = " + signed(values[k]); }
    });
  }

  function gradients(host) {
    // The padding's columns narrow, so that the words' columns show beside them.
    var series = DATA.gradients, word = wordColumns(host)[0].w, widths = [], labels = [];
    var narrow = Math.max(0.25, Math.min(3, 0.35 * ((host.clientWidth || 900) - F.AXIS) / Math.max(1, PAD)));
    for (var t = 0; t < T; t++) {
      widths.push(t < PAD ? narrow : word);
      labels.push(t < PAD ? "" : WORDS[t - PAD]);
    }
    var cols = F.columns(widths), lo = Infinity, hi = 0, H = 220;
    series.forEach(function (s) {
      s.values.forEach(function (v) { if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    if (!(hi > 0)) { lo = 1e-3; hi = 1; }
    var d0 = Math.floor(Math.log10(lo)), d1 = Math.max(d0 + 1, Math.ceil(Math.log10(hi)));
    function y(v) { return 8 + (d1 - Math.log10(v)) / (d1 - d0) * (H - 16); }
    var every = Math.ceil((d1 - d0) / 8), ticks = [];
    for (var d = d0; d <= d1; d += every) ticks.push({ y: y(Math.pow(10, d)), text: "1e" + d });
    F.draw(host, {
      cols: cols, labels: labels, height: H,
      axis: function (ctx) { F.yAxis(ctx, H, ticks, "norm (log scale)"); },
      draw: function (ctx, a, b) {
        if (PAD) {
          ctx.fillStyle = "#e6e6e6";
          ctx.fillRect(cols[0].x, 0, cols[PAD].x - cols[0].x, H);
        }
        ticks.forEach(function (tick) { hline(ctx, cols, a, b, tick.y, "#eee"); });
        series.forEach(function (s, j) {
          polyline(ctx, cols, a, b, function (k) { return s.values[k] > 0 ? s.values[k] : null; }, y,
                   s.dashed ? "#000" : SERIES[j % SERIES.length], s.dashed ? [5, 3] : null);
        });
      },
      extra: function (ctx) {
        if (!PAD) return;
        ctx.fillStyle = "#555";
        ctx.textAlign = "center";
        ctx.fillText(PAD + " padding steps", (cols[0].x + cols[PAD].x) / 2, H + 16);
      },
      hover: function (t) {
        var head = t < PAD ? "step " + (t + 1) + " of " + T + ": padding" : wordLine(t - PAD);
        return head + series.map(function (s) {
          var v = s.values[t];
          return "\n" + s.label + ": " + (v === null ? "not finite" : v > 0 ? v.toExponential(3) : "0");
        }).join("");
      }
    });
    var items = series.map(function (s, j) {
      return { colour: s.dashed ? "#000" : SERIES[j % SERIES.length], text: s.label, dashed: s.dashed };
    });
    if (PAD) items.push({ fill: "#e6e6e6", text: "padding" });
    F.key(document.getElementById("gradients-key"), items);
  }

  function states(host, view) {
    var H = view.units, values = {}, score = view.score, ranked = [], rank = [];
    STATES.forEach(function (name) { values[name] = floats(view.states[name]); });
    for (var u = 0; u < H; u++) ranked.push(u);
    ranked.sort(function (a, b) { return score[b] - score[a] || a - b; });
    ranked.forEach(function (u, r) { rank[u] = r; });
    var byNumber = ranked.slice().sort(function (a, b) { return a - b; });
    var choice = { name: "h", ranked: true, unit: ranked[0] };
    var rowH = Math.max(3, Math.min(14, Math.floor(560 / H))), TOP = 6;   // TOP: room for the first label
    var bar = F.element("div", "controls", host), buttons = {};
    STATES.forEach(function (name) {
      buttons[name] = F.element("button", null, bar, NAMES[name]);
      buttons[name].type = "button";
      buttons[name].addEventListener("click", function () { choice.name = name; render(); });
    });
    var order = F.element("button", null, bar);
    order.type = "button";
    order.addEventListener("click", function () { choice.ranked = !choice.ranked; render(); });
    var legendHost = F.element("div", "legend", host), heat = F.element("div", "heat", host);
    var caption = F.element("p", "caption", host), detail = F.element("div", "detail", host);
    var detailKey = F.element("div", "figure-key", host), box = null;

    function unitLine(u) {
      return "unit " + u + " (rank " + (rank[u] + 1) + " of " + H + " by importance, score " + score[u].toPrecision(3) + ")";
    }

    function render() {
      STATES.forEach(function (name) { buttons[name].className = name === choice.name ? "on" : ""; });
      order.textContent = choice.ranked ? "rows: by importance (click: by unit number)"
                                        : "rows: by unit number (click: by importance)";
      var name = choice.name, v = values[name], rows = choice.ranked ? ranked : byNumber;
      var sc = name === "i" || name === "f" || name === "o" ? GATE : diverging(largest(v) || 1);
      F.legend(legendHost, sc, NAMES[name], 2);
      var cols = wordColumns(heat), height = H * rowH + 2 * TOP, every = Math.ceil(14 / rowH);
      var scrolled = box ? box.scrollLeft : 0;
      box = F.draw(heat, {
        cols: cols, labels: WORDS, height: height,
        axis: function (ctx) {
          var ticks = [];
          for (var r = 0; r < H; r += every) ticks.push({ y: TOP + r * rowH + rowH / 2, text: "unit " + rows[r] });
          F.yAxis(ctx, height, ticks, "");
          ctx.fillStyle = "#000";
          var at = TOP + rows.indexOf(choice.unit) * rowH + rowH / 2;
          ctx.beginPath();
          ctx.moveTo(2, at - 5);
          ctx.lineTo(10, at);
          ctx.lineTo(2, at + 5);
          ctx.fill();
        },
        draw: function (ctx, a, b) {
          for (var k = a; k <= b; k++) {
            for (var r = 0; r < H; r++) {
              ctx.fillStyle = sc.colour(v[k * H + rows[r]]);
              ctx.fillRect(cols[k].x, TOP + r * rowH, cols[k].w + 0.5, rowH + 0.5);
            }
          }
          ctx.strokeStyle = "#000";
          var at = TOP + rows.indexOf(choice.unit) * rowH;
          ctx.strokeRect(cols[a].x, at + 0.5, cols[b].x + cols[b].w - cols[a].x, rowH - 1);
        },
        hover: function (k, y) {
          if (y === null) return wordLine(k);
          var unit = rows[Math.max(0, Math.min(H - 1, Math.floor((y - TOP) / rowH)))];
          return unitLine(unit) + "\n" + wordLine(k) + "\n" + name + " = " + v[k * H + unit].toFixed(4);
        },
        click: function (k, y) {
          choice.unit = rows[Math.max(0, Math.min(H - 1, Math.floor((y - TOP) / rowH)))];
          render();
        }
      });
      box.scrollLeft = scrolled;
      caption.textContent = "Below: every quantity of " + unitLine(choice.unit) +
                            ". Click a row of the heatmap to follow another unit.";
      unit(detail, detailKey, choice.unit);
    }

    function unit(host, keyHost, u) {
      var H2 = 160, cols = wordColumns(host), lo = -1, hi = 1;
      for (var k = 0; k < N; k++) { lo = Math.min(lo, values.c[k * H + u]); hi = Math.max(hi, values.c[k * H + u]); }
      function y(x) { return 8 + (hi - x) / (hi - lo) * (H2 - 16); }
      var ticks = [hi, 1, 0, -1, lo].filter(function (x, j, all) {      // none closer than a line
        return all.slice(0, j).every(function (z) { return Math.abs(y(z) - y(x)) >= 14; });
      });
      F.draw(host, {
        cols: cols, labels: WORDS, height: H2,
        axis: function (ctx) {
          F.yAxis(ctx, H2, ticks.map(function (x) { return { y: y(x), text: x.toFixed(2) }; }), "unit " + u);
        },
        draw: function (ctx, a, b) {
          hline(ctx, cols, a, b, y(0), "#999", [4, 3]);
          STATES.forEach(function (name) {
            polyline(ctx, cols, a, b, function (k) { return values[name][k * H + u]; }, y, COLOURS[name]);
          });
        },
        hover: function (k) {
          return "unit " + u + ", " + wordLine(k) + STATES.map(function (name) {
            return "\n" + name + " = " + values[name][k * H + u].toFixed(4);
          }).join("");
        }
      });
      F.key(keyHost, STATES.map(function (name) { return { colour: COLOURS[name], text: NAMES[name] }; }));
    }

    render();
  }

  var host = document.getElementById("running");
  if (host && DATA.running) running(host);
  bars(document.getElementById("attributions"), DATA.attributions, "attribution");
  bars(document.getElementById("occlusion"), DATA.occlusion, "occlusion");
  gradients(document.getElementById("gradients"));
  DATA.views.forEach(function (view, j) { states(document.getElementById("states-" + j), view); });
})();
