// admap view: the alignment data map in the browser. Hand-written, no libraries, no network.
// Dataset text reaches the DOM through textContent only: responses may hold HTML and scripts.
//
// The page draws the mean–variance map, and beside it the semantic view where `admap neighbours` has run (the
// instructions' embeddings laid out in 2-D) and the training-dynamics view where a DPO run's pair margins were
// given (confidence against variability). A panel owns its canvases, its coordinates, its view (pan and zoom),
// its grid for hover and its renderer; the colouring, the selection, the search matches and the opened
// instruction are the page's, so that whatever one panel selects the others show.
(function () {
  "use strict";

  // Numbers come packed (little-endian bytes in base64, {dtype, base64}) and ids as one newline-joined string
  // ({lines}): a million of each parse in milliseconds, where JSON arrays of them take seconds.
  const ARRAYS = { float32: Float32Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array };
  function bytesOf(base64) {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let k = 0; k < binary.length; k++) bytes[k] = binary.charCodeAt(k);
    return bytes;
  }
  // The packed values in parsed JSON, unpacked in place: a walk over objects only (never into the arrays of
  // texts), far cheaper than a JSON.parse reviver called on every string.
  function unpack(value) {
    if (value === null || typeof value !== "object") return value;
    if (Array.isArray(value)) {
      for (let k = 0; k < value.length; k++) if (value[k] !== null && typeof value[k] === "object") value[k] = unpack(value[k]);
      return value;
    }
    if (typeof value.base64 === "string" && ARRAYS[value.dtype]) return new ARRAYS[value.dtype](bytesOf(value.base64).buffer);
    if (typeof value.lines === "string") return value.lines ? value.lines.split("\n") : [];
    for (const key of Object.keys(value)) value[key] = unpack(value[key]);
    return value;
  }

  const data = unpack(JSON.parse(document.getElementById("admap-data").textContent));
  const meta = data.meta;
  const ins = data.instructions;
  const semantic = data.semantic || null;
  const dynamics = data.dynamics || null;
  const n = ins.id.length;
  const served = meta.texts === "served";
  const DENSITY_ABOVE = 40000; // points in view past which a panel draws their density (see the README)
  const DENSITY_BIN = 2; // CSS pixels per density cell
  const MISSING_RGB = [200, 200, 200];
  const VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];
  const RESULTS_SHOWN = 100;
  const $ = (id) => document.getElementById(id);
  const finite = (value) => typeof value === "number" && isFinite(value);

  // ---- small helpers
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function formatNumber(value) {
    if (!finite(value)) return "—";
    const magnitude = Math.abs(value);
    if (value === 0 || (magnitude >= 1e-3 && magnitude < 1e6)) return String(Number(value.toPrecision(4)));
    return value.toExponential(2);
  }

  function snippet(text, limit) {
    const value = text || "";
    return value.length > limit ? value.slice(0, limit) + "…" : value;
  }

  function hexToRgb(hex) {
    const value = parseInt(hex.slice(1), 16);
    return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
  }

  function ramp(t) {
    const scaled = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
    const index = Math.min(VIRIDIS.length - 2, Math.floor(scaled));
    const a = hexToRgb(VIRIDIS[index]);
    const b = hexToRgb(VIRIDIS[index + 1]);
    const f = scaled - index;
    return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f));
  }

  function niceTicks(low, high, count) {
    const span = high - low;
    if (!(span > 0)) return [];
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const ticks = [];
    for (let t = Math.ceil(low / step) * step; t <= high + step * 1e-9; t += step) {
      ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return ticks;
  }

  // Values are normalised to [0, 1] over their padded extent, so that float32 keeps the precision of
  // variances near 1e-5; a panel's view is a window onto that unit square.
  function extent(values) {
    let low = Infinity;
    let high = -Infinity;
    for (const value of values) {
      if (!finite(value)) continue;
      if (value < low) low = value;
      if (value > high) high = value;
    }
    if (!isFinite(low)) return [0, 1];
    if (high - low < 1e-12) {
      const pad = Math.abs(low) * 0.05 || 0.5;
      return [low - pad, high + pad];
    }
    const pad = (high - low) * 0.04;
    return [low - pad, high + pad];
  }

  const categoryOf = (mode, i) => mode.names[mode.codes[i]];
  const regionMode = data.colourings.find((mode) => mode.key === "region");
  const regionOf = (i) => categoryOf(regionMode, i);
  // The dataset's mean rating is carried once, as a colouring (where the dataset has ratings).
  const meanRating = data.colourings.find((mode) => mode.key === "mean_rating") || null;

  // ---- the page's state, shared by the panels
  const state = {
    tool: "pan",
    colouring: null,
    hovered: -1,
    opened: -1,
    selected: new Uint8Array(n),
    selectedCount: 0,
    exportText: "", // the export of the selection, and the file name it is saved under
    exportName: "",
    matches: new Uint8Array(n),
    matchCount: 0,
  };
  const colours = new Uint8Array(n * 4);
  // How long the last hover and the last box or lasso selection took in the page (benchmarks read them).
  const timings = { hoverMs: null, selectMs: null };
  const flags = new Float32Array(n);

  // ---- renderers: WebGL, or a 2D canvas where WebGL is missing. Each draws one panel's points.
  const VERTEX_SHADER = `
    attribute vec2 a_position;
    attribute vec4 a_colour;
    attribute float a_flag;
    uniform vec4 u_view;
    uniform mediump float u_size;
    uniform float u_alpha;
    uniform float u_dim;
    uniform mediump float u_pass;
    varying vec4 v_colour;
    varying float v_flag;
    void main() {
      float flagged = step(0.5, a_flag);
      if (u_pass > 0.5 && flagged < 0.5) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);
        gl_PointSize = 0.0;
        return;
      }
      vec2 p = (a_position - u_view.xy) * u_view.zw;
      gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
      gl_PointSize = u_pass > 0.5 ? u_size + 4.0 : u_size;
      float alpha = u_pass > 0.5 ? 1.0 : (u_dim > 0.5 ? u_alpha * 0.3 : u_alpha);
      v_colour = vec4(a_colour.rgb, alpha);
      v_flag = a_flag;
    }`;
  const FRAGMENT_SHADER = `
    precision mediump float;
    uniform float u_pass;
    uniform float u_size;
    varying vec4 v_colour;
    varying float v_flag;
    void main() {
      vec2 d = gl_PointCoord * 2.0 - 1.0;
      float r = dot(d, d);
      if (r > 1.0) discard;
      if (u_pass > 0.5) {
        float inner = u_size / (u_size + 4.0);
        if (r > inner * inner) {
          gl_FragColor = v_flag > 1.5 ? vec4(0.07, 0.07, 0.07, 1.0) : vec4(0.95, 0.6, 0.0, 1.0);
          return;
        }
      }
      gl_FragColor = v_colour;
    }`;

  function webglRenderer(canvas, panel) {
    let gl = null;
    try {
      // Transparent where nothing is drawn: the density layer under this canvas shows through.
      gl = canvas.getContext("webgl", { antialias: false, premultipliedAlpha: true, preserveDrawingBuffer: true });
    } catch (error) {
      gl = null;
    }
    if (!gl) return null;
    const compile = (type, source) => {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) console.warn("admap view:", gl.getShaderInfoLog(shader));
      return shader;
    };
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl.VERTEX_SHADER, VERTEX_SHADER));
    gl.attachShader(program, compile(gl.FRAGMENT_SHADER, FRAGMENT_SHADER));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      console.warn("admap view: WebGL program failed, drawing on a 2D canvas:", gl.getProgramInfoLog(program));
      return null;
    }
    const uniform = (name) => gl.getUniformLocation(program, name);
    const uniforms = {
      view: uniform("u_view"),
      size: uniform("u_size"),
      alpha: uniform("u_alpha"),
      dim: uniform("u_dim"),
      pass: uniform("u_pass"),
    };
    const attach = (name, array, size, type, normalised) => {
      const buffer = gl.createBuffer();
      const location = gl.getAttribLocation(program, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.bufferData(gl.ARRAY_BUFFER, array, gl.DYNAMIC_DRAW);
      gl.enableVertexAttribArray(location);
      gl.vertexAttribPointer(location, size, type, normalised, 0, 0);
      return buffer;
    };
    // Points without a position in this panel sit far outside clip space and are never drawn.
    const positions = new Float32Array(2 * n).fill(-10);
    for (let i = 0; i < n; i++) {
      if (!panel.on[i]) continue;
      positions[2 * i] = panel.us[i];
      positions[2 * i + 1] = panel.vs[i];
    }
    gl.useProgram(program);
    attach("a_position", positions, 2, gl.FLOAT, false);
    const colourBuffer = attach("a_colour", colours, 4, gl.UNSIGNED_BYTE, true);
    const flagBuffer = attach("a_flag", flags, 1, gl.FLOAT, false);
    const upload = (buffer, array) => {
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.bufferData(gl.ARRAY_BUFFER, array, gl.DYNAMIC_DRAW);
    };
    return {
      kind: "webgl",
      setColours: () => upload(colourBuffer, colours),
      setFlags: () => upload(flagBuffer, flags),
      // Draws every point (``points``) or only the flagged ones (over a density layer), the flagged ringed.
      draw({ size, alpha, dim, flagged, points }) {
        const box = panel.box;
        const dpr = box.dpr;
        gl.disable(gl.SCISSOR_TEST);
        gl.viewport(0, 0, canvas.width, canvas.height);
        gl.clearColor(0, 0, 0, 0);
        gl.clear(gl.COLOR_BUFFER_BIT);
        const x = Math.round(box.left * dpr);
        const y = Math.round((box.cssHeight - box.top - box.height) * dpr);
        const width = Math.round(box.width * dpr);
        const height = Math.round(box.height * dpr);
        gl.viewport(x, y, width, height);
        gl.enable(gl.SCISSOR_TEST);
        gl.scissor(x, y, width, height);
        gl.enable(gl.BLEND);
        // Premultiplied output: colour blended by the point's alpha, coverage accumulated.
        gl.blendFuncSeparate(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
        const view = panel.view;
        gl.uniform4f(uniforms.view, view.u0, view.v0, 1 / (view.u1 - view.u0), 1 / (view.v1 - view.v0));
        gl.uniform1f(uniforms.size, size * dpr);
        gl.uniform1f(uniforms.alpha, alpha);
        gl.uniform1f(uniforms.dim, dim ? 1 : 0);
        if (points) {
          gl.uniform1f(uniforms.pass, 0);
          gl.drawArrays(gl.POINTS, 0, n);
        }
        if (flagged) {
          gl.uniform1f(uniforms.pass, 1);
          gl.drawArrays(gl.POINTS, 0, n);
        }
      },
    };
  }

  function canvasRenderer(canvas, panel) {
    const context2d = canvas.getContext("2d");
    let groups = new Map();
    return {
      kind: "canvas2d",
      setColours() {
        groups = new Map();
        for (let i = 0; i < n; i++) {
          if (!panel.on[i]) continue;
          const key = `rgb(${colours[4 * i]},${colours[4 * i + 1]},${colours[4 * i + 2]})`;
          if (!groups.has(key)) groups.set(key, []);
          groups.get(key).push(i);
        }
      },
      setFlags() {},
      draw({ size, alpha, dim, flagged, points }) {
        const box = panel.box;
        const { us, vs, screenX, screenY } = panel;
        context2d.setTransform(1, 0, 0, 1, 0, 0);
        context2d.clearRect(0, 0, canvas.width, canvas.height);
        context2d.setTransform(box.dpr, 0, 0, box.dpr, 0, 0);
        context2d.save();
        context2d.beginPath();
        context2d.rect(box.left, box.top, box.width, box.height);
        context2d.clip();
        context2d.globalAlpha = dim ? alpha * 0.3 : alpha;
        for (const [key, indices] of points ? groups : []) {
          context2d.fillStyle = key;
          for (const i of indices) {
            context2d.beginPath();
            context2d.arc(screenX(us[i]), screenY(vs[i]), size / 2, 0, 2 * Math.PI);
            context2d.fill();
          }
        }
        context2d.globalAlpha = 1;
        if (flagged) {
          for (const [key, indices] of groups) {
            for (const i of indices) {
              if (!flags[i]) continue;
              context2d.beginPath();
              context2d.arc(screenX(us[i]), screenY(vs[i]), size / 2 + 1.5, 0, 2 * Math.PI);
              context2d.fillStyle = key;
              context2d.fill();
              context2d.lineWidth = 2;
              context2d.strokeStyle = flags[i] > 1.5 ? "#121212" : "#f29900";
              context2d.stroke();
            }
          }
        }
        context2d.restore();
      },
    };
  }

  // ---- drawing: one animation frame redraws every panel that asked for it.
  let frame = 0;
  function drawFrame() {
    frame = 0;
    for (const panel of panels) panel.drawNow();
  }

  function scheduleDraw(points) {
    for (const panel of panels) panel.schedule(points);
  }

  // ---- a panel: a scatter plot of the instructions at (xs[i], ys[i]), null where one has no position.
  // options: name, root (the element holding the canvases), xs, ys, xLabel, yLabel, margin, ticks (numbers on
  // the axes), thresholds (the map's region lines).
  function createPanel(options) {
    const root = options.root;
    const margin = options.margin;
    const [xLow, xHigh] = extent(options.xs);
    const [yLow, yHigh] = extent(options.ys);
    const toU = (value) => (value - xLow) / (xHigh - xLow);
    const toV = (value) => (value - yLow) / (yHigh - yLow);
    const fromU = (u) => xLow + u * (xHigh - xLow);
    const fromV = (v) => yLow + v * (yHigh - yLow);

    const us = new Float32Array(n);
    const vs = new Float32Array(n);
    const on = new Uint8Array(n);
    let count = 0;
    for (let i = 0; i < n; i++) {
      const x = options.xs[i];
      const y = options.ys[i];
      if (!finite(x) || !finite(y)) continue;
      us[i] = toU(x);
      vs[i] = toV(y);
      on[i] = 1;
      count++;
    }

    // A uniform grid over the unit square, finer the more points there are (about 4 a cell): hover and click
    // find the nearest point in a few cells, within a frame at a million points.
    const GRID = Math.max(64, Math.min(1024, Math.round(Math.sqrt(count / 4))));
    const cellOf = (w) => Math.min(GRID - 1, Math.max(0, Math.floor(w * GRID)));
    const grid = (function buildGrid() {
      const start = new Int32Array(GRID * GRID + 1);
      const cells = new Int32Array(n).fill(-1);
      for (let i = 0; i < n; i++) {
        if (!on[i]) continue;
        cells[i] = cellOf(vs[i]) * GRID + cellOf(us[i]);
        start[cells[i] + 1]++;
      }
      for (let c = 0; c < GRID * GRID; c++) start[c + 1] += start[c];
      const next = start.slice(0, GRID * GRID);
      const items = new Int32Array(count);
      for (let i = 0; i < n; i++) if (cells[i] >= 0) items[next[cells[i]]++] = i;
      return { start, items };
    })();

    let pointsCanvas = root.querySelector("canvas.points");
    const densityCanvas = root.querySelector("canvas.density");
    const densityContext = densityCanvas.getContext("2d");
    const overlay = root.querySelector("canvas.overlay");
    const context = overlay.getContext("2d");
    const tooltip = root.querySelector(".tooltip");

    const panel = {
      name: options.name,
      root,
      overlay,
      us,
      vs,
      on,
      count,
      view: { u0: 0, u1: 1, v0: 0, v1: 1 },
      box: { left: 0, top: 0, width: 1, height: 1, cssWidth: 1, cssHeight: 1, dpr: 1 },
      drag: null,
      pendingPoints: false,
      pendingOverlay: false,
      renderer: null,
      // What the last frame drew: points in view, their size, "points" or "density".
      visible: count,
      size: 4,
      layer: "points",
      toU,
      toV,
    };
    const box = () => panel.box;
    const view = () => panel.view;
    panel.screenX = (u) => box().left + ((u - view().u0) / (view().u1 - view().u0)) * box().width;
    panel.screenY = (v) => box().top + (1 - (v - view().v0) / (view().v1 - view().v0)) * box().height;
    const unitX = (x) => view().u0 + ((x - box().left) / box().width) * (view().u1 - view().u0);
    const unitY = (y) => view().v0 + (1 - (y - box().top) / box().height) * (view().v1 - view().v0);
    const { screenX, screenY } = panel;
    const pointSize = () => panel.size;

    // Points in view: what point size, opacity and the choice of layer follow, so that zooming into a dense
    // corner opens it up into points.
    function visibleCount() {
      const { u0, u1, v0, v1 } = view();
      let visible = 0;
      for (let i = 0; i < n; i++) {
        if (on[i] && us[i] >= u0 && us[i] <= u1 && vs[i] >= v0 && vs[i] <= v1) visible++;
      }
      return visible;
    }

    // The density layer: points binned into DENSITY_BIN-pixel cells, each cell the mean colour of its points
    // (categorical shading, as datashader does) and more opaque the more points it holds (log scale).
    function drawDensity(dim) {
      const b = panel.box;
      const { u0, u1, v0, v1 } = view();
      const columns = Math.max(1, Math.ceil(b.width / DENSITY_BIN));
      const rows = Math.max(1, Math.ceil(b.height / DENSITY_BIN));
      const counts = new Float32Array(columns * rows);
      const sums = new Float32Array(3 * columns * rows);
      const cu = columns / (u1 - u0);
      const cv = rows / (v1 - v0);
      for (let i = 0; i < n; i++) {
        if (!on[i]) continue;
        const column = Math.floor((us[i] - u0) * cu);
        const row = Math.floor((v1 - vs[i]) * cv);
        if (column < 0 || column >= columns || row < 0 || row >= rows) continue;
        const cell = row * columns + column;
        counts[cell]++;
        sums[3 * cell] += colours[4 * i];
        sums[3 * cell + 1] += colours[4 * i + 1];
        sums[3 * cell + 2] += colours[4 * i + 2];
      }
      let most = 1;
      let occupied = 0;
      for (let cell = 0; cell < counts.length; cell++) {
        if (counts[cell] > most) most = counts[cell];
        if (counts[cell]) occupied++;
      }
      const scale = 1 / Math.log1p(most);
      const fade = dim ? 0.35 : 1;
      const opacity = (c) => fade * (0.55 + 0.45 * Math.log1p(c) * scale);
      const c = densityContext;
      c.setTransform(b.dpr, 0, 0, b.dpr, 0, 0);
      c.clearRect(0, 0, b.cssWidth, b.cssHeight);
      // Spread, as datashader's dynspread: where the points sit on few distinct positions (ratings make grids),
      // each occupied cell is drawn as a disc large enough for the picture to fill, not as a pixel.
      const spread = Math.max(DENSITY_BIN, Math.min(10, 0.45 * Math.sqrt((b.width * b.height) / Math.max(occupied, 1))));
      if (spread > 1.5 * DENSITY_BIN) {
        c.save();
        c.beginPath();
        c.rect(b.left, b.top, b.width, b.height);
        c.clip();
        for (let cell = 0; cell < counts.length; cell++) {
          const count = counts[cell];
          if (!count) continue;
          const x = b.left + ((cell % columns) + 0.5) * DENSITY_BIN;
          const y = b.top + (Math.floor(cell / columns) + 0.5) * DENSITY_BIN;
          const rgb = [0, 1, 2].map((k) => Math.round(sums[3 * cell + k] / count));
          c.globalAlpha = opacity(count);
          c.fillStyle = `rgb(${rgb.join(",")})`;
          c.beginPath();
          c.arc(x, y, spread / 2, 0, 2 * Math.PI);
          c.fill();
        }
        c.restore();
        return;
      }
      const image = new ImageData(columns, rows);
      for (let cell = 0; cell < counts.length; cell++) {
        const count = counts[cell];
        if (!count) continue;
        image.data[4 * cell] = sums[3 * cell] / count;
        image.data[4 * cell + 1] = sums[3 * cell + 1] / count;
        image.data[4 * cell + 2] = sums[3 * cell + 2] / count;
        image.data[4 * cell + 3] = 255 * opacity(count);
      }
      const cells = element("canvas");
      cells.width = columns;
      cells.height = rows;
      cells.getContext("2d").putImageData(image, 0, 0);
      c.imageSmoothingEnabled = false;
      c.drawImage(cells, b.left, b.top, columns * DENSITY_BIN, rows * DENSITY_BIN);
    }

    function clearDensity() {
      densityContext.setTransform(1, 0, 0, 1, 0, 0);
      densityContext.clearRect(0, 0, densityCanvas.width, densityCanvas.height);
    }

    function layout() {
      const rect = root.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      for (const canvas of [densityCanvas, pointsCanvas, overlay]) {
        canvas.width = Math.max(1, Math.round(rect.width * dpr));
        canvas.height = Math.max(1, Math.round(rect.height * dpr));
      }
      panel.box = {
        left: margin.left,
        top: margin.top,
        width: Math.max(10, rect.width - margin.left - margin.right),
        height: Math.max(10, rect.height - margin.top - margin.bottom),
        cssWidth: rect.width,
        cssHeight: rect.height,
        dpr,
      };
    }

    // The panel resizes when the detail panel opens; the ResizeObserver catches up a frame later, callers
    // that need positions now (the test hook) lay out first.
    panel.ensureLayout = function ensureLayout() {
      const rect = root.getBoundingClientRect();
      if (rect.width === panel.box.cssWidth && rect.height === panel.box.cssHeight) return;
      layout();
      panel.schedule(true);
    };

    panel.schedule = function schedule(points) {
      panel.pendingPoints = panel.pendingPoints || points;
      panel.pendingOverlay = true;
      if (!frame) frame = requestAnimationFrame(drawFrame);
    };

    panel.drawNow = function drawNow() {
      if (panel.pendingPoints) {
        const flagged = state.selectedCount > 0 || state.matchCount > 0;
        const visible = visibleCount();
        const area = panel.box.width * panel.box.height;
        // Smaller points the more there are in view; opacity such that they cover the plot about once over.
        const size = Math.max(2, Math.min(9, 9 * Math.pow(1000 / Math.max(visible, 1), 0.3)));
        const alpha = Math.max(0.35, Math.min(0.9, (1.2 * area) / (Math.max(visible, 1) * size * size)));
        const layer = visible > DENSITY_ABOVE ? "density" : "points";
        Object.assign(panel, { visible, size, layer });
        if (layer === "density") drawDensity(flagged);
        else clearDensity();
        panel.renderer.draw({ size, alpha, dim: flagged, flagged, points: layer === "points" });
        panel.pendingPoints = false;
      }
      if (panel.pendingOverlay) drawOverlay();
      panel.pendingOverlay = false;
    };

    function ring(i, extra, width, colour) {
      context.beginPath();
      context.arc(screenX(us[i]), screenY(vs[i]), pointSize() / 2 + extra, 0, 2 * Math.PI);
      context.lineWidth = width;
      context.strokeStyle = colour;
      context.stroke();
    }

    function drawOverlay() {
      const c = context;
      const b = panel.box;
      c.setTransform(b.dpr, 0, 0, b.dpr, 0, 0);
      c.clearRect(0, 0, b.cssWidth, b.cssHeight);
      const right = b.left + b.width;
      const bottom = b.top + b.height;
      c.strokeStyle = "#999";
      c.lineWidth = 1;
      c.strokeRect(b.left + 0.5, b.top + 0.5, b.width - 1, b.height - 1);
      c.fillStyle = "#444";
      c.font = "11px system-ui, sans-serif";
      c.textAlign = "center";
      c.textBaseline = "top";
      if (options.ticks) {
        for (const t of niceTicks(fromU(view().u0), fromU(view().u1), Math.max(2, b.width / 110))) {
          const x = screenX(toU(t));
          c.fillRect(x, bottom, 1, 4);
          c.fillText(formatNumber(t), x, bottom + 6);
        }
      }
      c.fillText(options.xLabel, b.left + b.width / 2, bottom + (options.ticks ? 24 : 6));
      c.textAlign = "right";
      c.textBaseline = "middle";
      if (options.ticks) {
        for (const t of niceTicks(fromV(view().v0), fromV(view().v1), Math.max(2, b.height / 70))) {
          const y = screenY(toV(t));
          c.fillRect(b.left - 4, y, 4, 1);
          c.fillText(formatNumber(t), b.left - 6, y);
        }
      }
      c.save();
      c.translate(12, b.top + b.height / 2);
      c.rotate(-Math.PI / 2);
      c.textAlign = "center";
      c.fillText(options.yLabel, 0, 0);
      c.restore();

      c.save();
      c.beginPath();
      c.rect(b.left, b.top, b.width, b.height);
      c.clip();
      if (options.thresholds) {
        // The thresholds as the static figure draws them: the mean one splits only the low-variance side.
        const thresholds = meta.thresholds;
        c.setLineDash([5, 4]);
        c.strokeStyle = "#555";
        c.beginPath();
        if (thresholds.variance !== null) {
          const x = screenX(toU(thresholds.variance));
          c.moveTo(x, b.top);
          c.lineTo(x, bottom);
        }
        if (thresholds.mean !== null) {
          const y = screenY(toV(thresholds.mean));
          c.moveTo(b.left, y);
          c.lineTo(thresholds.variance !== null ? screenX(toU(thresholds.variance)) : right, y);
        }
        c.stroke();
        c.setLineDash([]);
      }
      // The opened and the hovered instruction are ringed in every panel that draws them.
      if (state.opened >= 0 && on[state.opened]) ring(state.opened, 6, 2.5, "#c2185b");
      if (state.hovered >= 0 && on[state.hovered]) ring(state.hovered, 4, 2, "#111");
      const drag = panel.drag;
      if (drag && drag.moved && drag.tool === "box") {
        c.fillStyle = "rgba(47, 59, 82, 0.08)";
        c.strokeStyle = "#2f3b52";
        c.lineWidth = 1;
        const x = Math.min(drag.start.x, drag.last.x);
        const y = Math.min(drag.start.y, drag.last.y);
        c.fillRect(x, y, Math.abs(drag.last.x - drag.start.x), Math.abs(drag.last.y - drag.start.y));
        c.strokeRect(x, y, Math.abs(drag.last.x - drag.start.x), Math.abs(drag.last.y - drag.start.y));
      }
      if (drag && drag.moved && drag.tool === "lasso") {
        c.beginPath();
        drag.points.forEach((p, k) => (k ? c.lineTo(p.x, p.y) : c.moveTo(p.x, p.y)));
        c.closePath();
        c.fillStyle = "rgba(47, 59, 82, 0.08)";
        c.fill();
        c.strokeStyle = "#2f3b52";
        c.lineWidth = 1;
        c.stroke();
      }
      c.restore();
    }

    // ---- hover: the nearest point within a few pixels, through the grid
    function nearest(x, y) {
      const b = panel.box;
      if (x < b.left || x > b.left + b.width || y < b.top || y > b.top + b.height) return -1;
      const radius = Math.max(6, pointSize() / 2 + 3);
      const u = unitX(x);
      const v = unitY(y);
      const du = (radius / b.width) * (view().u1 - view().u0);
      const dv = (radius / b.height) * (view().v1 - view().v0);
      if (u + du < 0 || u - du > 1 || v + dv < 0 || v - dv > 1) return -1;
      let best = -1;
      let bestDistance = radius * radius;
      for (let row = cellOf(v - dv); row <= cellOf(v + dv); row++) {
        for (let column = cellOf(u - du); column <= cellOf(u + du); column++) {
          const cell = row * GRID + column;
          for (let k = grid.start[cell]; k < grid.start[cell + 1]; k++) {
            const i = grid.items[k];
            const dx = screenX(us[i]) - x;
            const dy = screenY(vs[i]) - y;
            const distance = dx * dx + dy * dy;
            if (distance < bestDistance) {
              best = i;
              bestDistance = distance;
            }
          }
        }
      }
      return best;
    }

    function showTooltip(i, point) {
      const text = instructionText(i);
      if (text === null) {
        // Shown when its text arrives, if the pointer is still on it.
        detailOf(i).then(() => state.hovered === i && tooltip.dataset.instructionId === ins.id[i] && showTooltip(i, point), () => {});
      }
      tooltip.replaceChildren(
        element("div", "text", text === null ? "…" : snippet(text, 300)),
        element("div", "stats", describe(i)),
      );
      tooltip.dataset.instructionId = ins.id[i];
      tooltip.hidden = false;
      const width = tooltip.offsetWidth;
      const height = tooltip.offsetHeight;
      const b = panel.box;
      const left = point.x + 14 + width > b.cssWidth ? point.x - 14 - width : point.x + 14;
      const top = point.y + 14 + height > b.cssHeight ? point.y - 14 - height : point.y + 14;
      tooltip.style.left = `${Math.max(0, left)}px`;
      tooltip.style.top = `${Math.max(0, top)}px`;
    }

    panel.hideTooltip = function hideTooltip() {
      tooltip.hidden = true;
      delete tooltip.dataset.instructionId;
    };

    function hover(point) {
      const started = performance.now();
      const i = nearest(point.x, point.y);
      setHovered(i);
      if (i < 0) panel.hideTooltip();
      else showTooltip(i, point);
      timings.hoverMs = performance.now() - started;
    }

    // ---- selection: what this panel encloses becomes the page's selection
    function selectWhere(inside, add) {
      const started = performance.now();
      if (!add) state.selected.fill(0);
      for (let i = 0; i < n; i++) if (on[i] && inside(us[i], vs[i])) state.selected[i] = 1;
      updateSelection();
      timings.selectMs = performance.now() - started;
    }

    function selectBox(a, b, add) {
      const [u0, u1] = [unitX(a.x), unitX(b.x)].sort((p, q) => p - q);
      const [v0, v1] = [unitY(a.y), unitY(b.y)].sort((p, q) => p - q);
      selectWhere((u, v) => u >= u0 && u <= u1 && v >= v0 && v <= v1, add);
    }

    function selectLasso(points, add) {
      const polygon = points.map((p) => [unitX(p.x), unitY(p.y)]);
      const us0 = Math.min(...polygon.map((p) => p[0]));
      const us1 = Math.max(...polygon.map((p) => p[0]));
      const vs0 = Math.min(...polygon.map((p) => p[1]));
      const vs1 = Math.max(...polygon.map((p) => p[1]));
      const inside = (u, v) => {
        if (u < us0 || u > us1 || v < vs0 || v > vs1) return false;
        let within = false;
        for (let k = 0, j = polygon.length - 1; k < polygon.length; j = k++) {
          const [ui, vi] = polygon[k];
          const [uj, vj] = polygon[j];
          if (vi > v !== vj > v && u < ((uj - ui) * (v - vi)) / (vj - vi) + ui) within = !within;
        }
        return within;
      };
      selectWhere(inside, add);
    }

    // ---- view: pan and zoom are the panel's own
    function zoomAt(point, factor) {
      const current = view();
      const width = Math.min(2, Math.max(1e-6, (current.u1 - current.u0) * factor));
      const height = Math.min(2, Math.max(1e-6, (current.v1 - current.v0) * factor));
      const u = unitX(point.x);
      const v = unitY(point.y);
      const fu = (u - current.u0) / (current.u1 - current.u0);
      const fv = (v - current.v0) / (current.v1 - current.v0);
      panel.view = { u0: u - fu * width, u1: u - fu * width + width, v0: v - fv * height, v1: v - fv * height + height };
      panel.schedule(true);
    }

    panel.resetView = function resetView() {
      panel.view = { u0: 0, u1: 1, v0: 0, v1: 1 };
      panel.schedule(true);
    };

    function local(event) {
      const rect = overlay.getBoundingClientRect();
      return { x: event.clientX - rect.left, y: event.clientY - rect.top };
    }

    overlay.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      overlay.setPointerCapture(event.pointerId);
      const point = local(event);
      panel.drag = { tool: state.tool, start: point, last: point, points: [point], moved: false, add: event.shiftKey };
    });
    overlay.addEventListener("pointermove", (event) => {
      const point = local(event);
      const drag = panel.drag;
      if (!drag) {
        hover(point);
        return;
      }
      if (!drag.moved && Math.hypot(point.x - drag.start.x, point.y - drag.start.y) <= 3) return;
      drag.moved = true;
      panel.hideTooltip();
      setHovered(-1);
      if (drag.tool === "pan") {
        const current = view();
        const du = ((point.x - drag.last.x) / panel.box.width) * (current.u1 - current.u0);
        const dv = ((point.y - drag.last.y) / panel.box.height) * (current.v1 - current.v0);
        panel.view = { u0: current.u0 - du, u1: current.u1 - du, v0: current.v0 + dv, v1: current.v1 + dv };
      } else if (drag.tool === "lasso") {
        drag.points.push(point);
      }
      drag.last = point;
      panel.schedule(drag.tool === "pan");
    });
    overlay.addEventListener("pointerup", (event) => {
      const drag = panel.drag;
      panel.drag = null;
      if (!drag) return;
      const point = local(event);
      if (!drag.moved) {
        const i = nearest(point.x, point.y);
        if (i >= 0) openDetail(i);
      } else if (drag.tool === "box") {
        selectBox(drag.start, point, drag.add);
      } else if (drag.tool === "lasso" && drag.points.length > 2) {
        selectLasso(drag.points, drag.add);
      }
      panel.schedule(false);
    });
    overlay.addEventListener("pointerleave", () => {
      if (panel.drag) return;
      setHovered(-1);
      panel.hideTooltip();
    });
    overlay.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        zoomAt(local(event), Math.exp(event.deltaY * 0.0015));
      },
      { passive: false },
    );

    // A canvas that has been asked for WebGL cannot give a 2D context: the fallback draws on a new one.
    function freshCanvas() {
      const canvas = element("canvas", pointsCanvas.className);
      canvas.id = pointsCanvas.id;
      pointsCanvas.replaceWith(canvas);
      pointsCanvas = canvas;
      return canvas;
    }

    panel.renderer = webglRenderer(pointsCanvas, panel) || canvasRenderer(freshCanvas(), panel);
    panel.project = (i) => (on[i] ? { x: screenX(us[i]), y: screenY(vs[i]) } : null);
    panel.toScreen = (x, y) => ({ x: screenX(toU(x)), y: screenY(toV(y)) });
    layout();
    new ResizeObserver(panel.ensureLayout).observe(root);
    return panel;
  }

  // ---- the panels
  const SEMANTIC_METHODS = { umap: "UMAP", pca: "PCA" };

  function semanticTitle() {
    const method = SEMANTIC_METHODS[semantic.method] || semantic.method || "layout";
    const facts = [`${method} of ${semantic.model || "instruction"} embeddings`];
    if (semantic.neighbourhood_kept !== null && semantic.neighbourhood_kept !== undefined) {
      facts.push(`${Math.round(semantic.neighbourhood_kept * 100)}% of neighbourhoods kept`);
    }
    return `semantic view — instructions by meaning (${facts.join("; ")})`;
  }

  function dynamicsTitle() {
    const points = `${dynamics.pairs.toLocaleString()} DPO pairs over ${dynamics.points} recording points`;
    return `training dynamics — instructions by their pairs' confidence and variability (${points})`;
  }

  const mapPanel = createPanel({
    name: "map",
    root: $("plot"),
    xs: ins.x,
    ys: ins.y,
    xLabel: "variance of alignment scores",
    yLabel: "mean alignment score",
    margin: { left: 66, right: 16, top: 14, bottom: 44 },
    ticks: true,
    thresholds: true,
  });
  const panels = [mapPanel];
  const mappedCount = mapPanel.count;
  const onMap = mapPanel.on;
  // The views beside the map: panels of the same kind, each with its title, its note and its axes.
  const besides = [];
  if (semantic) {
    const method = SEMANTIC_METHODS[semantic.method] || "semantic";
    besides.push({
      name: "semantic",
      title: semanticTitle(),
      explanation:
        "Nearby points are instructions with similar embeddings. Neighbourhoods kept: of each instruction's " +
        "nearest neighbours by embedding, the share that are also among its nearest in this 2-D layout.",
      xs: semantic.x,
      ys: semantic.y,
      xLabel: `${method} 1`,
      yLabel: `${method} 2`,
      margin: { left: 24, right: 16, top: 14, bottom: 26 },
      ticks: false,
    });
  }
  if (dynamics) {
    besides.push({
      name: "dynamics",
      title: dynamicsTitle(),
      explanation:
        "Per pair, confidence is the mean over the recording points of σ(margin), the policy's probability of " +
        "preferring the chosen response; variability is its standard deviation. A point is an instruction: " +
        "the means over its pairs.",
      xs: dynamics.x,
      ys: dynamics.y,
      xLabel: "variability of σ(margin) (mean of its pairs)",
      yLabel: "confidence (mean of its pairs)",
      margin: { left: 66, right: 16, top: 14, bottom: 44 },
      ticks: true,
    });
  }
  for (const beside of besides) {
    $(`${beside.name}-panel`).hidden = false;
    $(`${beside.name}-note`).hidden = false;
    const title = $(`${beside.name}-title`);
    title.textContent = beside.title;
    title.title = beside.explanation;
    panels.push(createPanel({ ...beside, root: $(`${beside.name}-plot`), thresholds: false }));
  }
  if (besides.length) {
    $("map-title").hidden = false;
    $("panels-note").hidden = false;
  }
  const panelNamed = (name) => panels.find((panel) => panel.name === (name || "map")) || null;

  function setHovered(i) {
    if (i === state.hovered) return;
    state.hovered = i;
    scheduleDraw(false);
  }

  // ---- colour, legend, flags
  function applyColouring(mode) {
    state.colouring = mode;
    if (mode.kind === "category") {
      const palette = mode.colours.map(hexToRgb);
      for (let i = 0; i < n; i++) colours.set(palette[mode.codes[i]], 4 * i);
    } else {
      const span = mode.max - mode.min || 1;
      for (let i = 0; i < n; i++) {
        const value = mode.values[i];
        colours.set(finite(value) ? ramp((value - mode.min) / span) : MISSING_RGB, 4 * i);
      }
    }
    for (let i = 0; i < n; i++) colours[4 * i + 3] = 255;
    for (const panel of panels) panel.renderer.setColours();
    renderLegend(mode);
    scheduleDraw(true);
  }

  function renderLegend(mode) {
    $("legend-title").textContent = mode.label;
    const list = $("legend");
    list.replaceChildren();
    if (mode.kind === "category") {
      const counts = new Array(mode.names.length).fill(0);
      for (let i = 0; i < n; i++) counts[mode.codes[i]]++;
      mode.names.forEach((name, k) => {
        if (!counts[k]) return;
        const item = element("li");
        const swatch = element("span", "swatch");
        swatch.style.background = mode.colours[k];
        item.append(swatch, element("span", "name", name), element("span", "count", counts[k].toLocaleString()));
        list.append(item);
      });
      return;
    }
    const bar = element("canvas");
    bar.width = 200;
    bar.height = 12;
    const c = bar.getContext("2d");
    for (let x = 0; x < 200; x++) {
      const [r, g, b] = ramp(x / 199);
      c.fillStyle = `rgb(${r},${g},${b})`;
      c.fillRect(x, 0, 1, 12);
    }
    const gradient = element("li");
    gradient.append(bar);
    const range = element("li");
    range.append(element("span", null, formatNumber(mode.min)), element("span", "count", formatNumber(mode.max)));
    const missing = element("li");
    const swatch = element("span", "swatch");
    swatch.style.background = `rgb(${MISSING_RGB.join(",")})`;
    missing.append(swatch, element("span", null, "no value"));
    list.append(gradient, range, missing);
  }

  function updateFlags() {
    for (let i = 0; i < n; i++) flags[i] = state.selected[i] + 2 * state.matches[i];
    for (const panel of panels) panel.renderer.setFlags();
    scheduleDraw(true);
  }

  // ---- texts: a single-file page carries them compressed and inflates them after its first paint; a served
  // page asks the server for one instruction's texts (whole) when it is hovered or opened.
  const texts = { loaded: false, failed: null, text: null, proxy: null, unmapped_reason: null, whole: null, responses: null };
  const fetched = new Map(); // served: instruction index -> its detail, the most recent FETCHED_KEPT
  const FETCHED_KEPT = 2000;

  function inflateTexts() {
    const blob = $("admap-details").textContent.trim();
    if (!blob) return Promise.reject(new Error("this page holds no texts"));
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser cannot inflate the page's texts (no DecompressionStream)"));
    }
    const stream = new Blob([bytesOf(blob)]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then((text) => Object.assign(texts, unpack(JSON.parse(text))));
  }

  const textsReady = served
    ? Promise.resolve()
    : inflateTexts().then(
        () => (texts.loaded = true),
        (error) => (texts.failed = String(error.message || error)),
      );

  // The instruction's text where the page has it now, else null.
  function instructionText(i) {
    if (served) return fetched.has(i) ? fetched.get(i).text : null;
    return texts.loaded ? texts.text[i] : null;
  }

  function inlineDetail(i) {
    if (!texts.loaded) throw new Error(texts.failed || "texts not loaded");
    const r = texts.responses;
    const responses = [];
    for (let k = r.start[i]; k < r.start[i + 1]; k++) {
      responses.push({
        id: r.id ? r.id[k] : `${ins.id[i]}-${k - r.start[i]}`,
        text: r.text[k],
        model: r.model.names[r.model.codes[k]],
        score: finite(r.score[k]) ? r.score[k] : null,
        rating: finite(r.rating[k]) ? r.rating[k] : null,
        chars: r.chars[k],
        words: r.words[k],
      });
    }
    return {
      text: texts.text[i],
      proxy: texts.proxy[i],
      unmapped_reason: texts.unmapped_reason[i],
      whole: texts.whole[i] === 1,
      responses,
    };
  }

  // Instruction i's texts and responses, as a promise.
  function detailOf(i) {
    if (!served) return textsReady.then(() => inlineDetail(i));
    if (fetched.has(i)) return Promise.resolve(fetched.get(i));
    return fetch(`/api/instruction/${i}`)
      .then((response) => {
        if (!response.ok) throw new Error(`the server answered ${response.status}`);
        return response.json();
      })
      .then((detail) => {
        detail.whole = true;
        if (fetched.size >= FETCHED_KEPT) fetched.delete(fetched.keys().next().value);
        fetched.set(i, detail);
        return detail;
      });
  }

  // ---- hover and detail
  function describe(i) {
    const parts = [regionOf(i), `mean ${formatNumber(ins.y[i])}`, `variance ${formatNumber(ins.x[i])}`];
    parts.push(`${ins.n_responses[i]} responses`);
    if (dynamics && finite(dynamics.y[i])) {
      parts.push(`DPO confidence ${formatNumber(dynamics.y[i])}, variability ${formatNumber(dynamics.x[i])}`);
    }
    if (state.colouring.kind === "category" && state.colouring.key !== "region") {
      parts.push(categoryOf(state.colouring, i));
    }
    return parts.join(" · ");
  }

  function definition(list, term, value) {
    list.append(element("dt", null, term), element("dd", null, value));
  }

  function byScore(responses) {
    // Best-scored first; unscored last, in input order.
    const order = responses.map((response, k) => k);
    return order
      .sort((a, b) => {
        const sa = responses[a].score;
        const sb = responses[b].score;
        if (sa === null || sb === null) return (sa === null) - (sb === null) || a - b;
        return sb - sa || a - b;
      })
      .map((k) => responses[k]);
  }

  function suspectsOf(i) {
    const pairs = [];
    const table = data.suspects;
    if (!table) return pairs;
    for (let k = 0; k < table.instruction.length; k++) if (table.instruction[k] === i) pairs.push(k);
    return pairs;
  }

  function openDetail(i) {
    const body = $("detail-body");
    const facts = element("dl");
    definition(facts, "instruction id", ins.id[i]);
    definition(facts, "region", regionOf(i));
    definition(facts, "mean score", formatNumber(ins.y[i]));
    definition(facts, "variance", formatNumber(ins.x[i]));
    definition(facts, "std", formatNumber(Math.sqrt(ins.x[i])));
    definition(facts, "responses", ins.n_responses[i]);
    definition(facts, "mean rating", formatNumber(meanRating ? meanRating.values[i] : NaN));
    definition(facts, "scorer", meta.scorer);
    if (dynamics && finite(dynamics.y[i])) {
      definition(facts, "DPO pairs", dynamics.n_pairs[i]);
      definition(facts, "DPO confidence", formatNumber(dynamics.y[i]));
      definition(facts, "DPO variability", formatNumber(dynamics.x[i]));
      definition(facts, "DPO correctness", formatNumber(dynamics.correctness[i]));
    }
    for (const mode of data.colourings) {
      if (mode.kind === "category" && mode.key !== "region") definition(facts, mode.label, categoryOf(mode, i));
    }
    const parts = [element("h3", null, "Instruction"), facts];
    const suspects = suspectsOf(i);
    if (suspects.length) {
      parts.push(element("h3", "suspect", `Pairs the scores contradict (${suspects.length})`));
      const list = element("ul");
      for (const k of suspects) {
        const line = `chosen ${data.suspects.chosen[k]} over ${data.suspects.rejected[k]}: margin ${formatNumber(
          data.suspects.margin[k],
        )}, suspicion ${formatNumber(data.suspects.suspicion[k])}`;
        list.append(element("li", "suspect", line));
      }
      parts.push(list);
    }
    const textsPart = element("div", "texts", served ? "asking the server for the texts…" : "inflating the texts…");
    parts.push(textsPart);
    body.replaceChildren(...parts);
    const detail = $("detail");
    detail.dataset.instructionId = ins.id[i];
    detail.hidden = false;
    detail.scrollTop = 0;
    state.opened = i;
    scheduleDraw(false);
    detailOf(i).then(
      (found) => {
        if (state.opened === i) textsPart.replaceWith(...detailTexts(found, facts));
      },
      (error) => {
        if (state.opened === i) textsPart.textContent = `texts unavailable: ${error.message || error}`;
      },
    );
  }

  function detailTexts(found, facts) {
    if (found.unmapped_reason) definition(facts, "not on the map", found.unmapped_reason);
    const parts = [];
    if (!found.whole) {
      parts.push(
        element(
          "p",
          "note shortened",
          "Texts shortened to fit this single-file page; `admap view --serve` shows every text whole.",
        ),
      );
    }
    parts.push(element("pre", "instruction", found.text));
    if (found.proxy !== null && found.proxy !== undefined) {
      const proxy = element("details");
      proxy.append(element("summary", null, "proxy (reference) response"), element("pre", "proxy", found.proxy));
      parts.push(proxy);
    }
    const responses = byScore(found.responses);
    parts.push(element("h3", null, `Responses (${responses.length}), best-scored first`));
    for (const response of responses) {
      const article = element("article", "response");
      article.dataset.responseId = response.id;
      const line = [
        response.id,
        response.model || "unknown model",
        `score ${formatNumber(response.score)}`,
        `rating ${formatNumber(response.rating)}`,
        `${response.chars.toLocaleString()} chars, ${response.words.toLocaleString()} words`,
      ];
      article.append(element("div", "response-meta", line.join(" · ")), element("pre", "response-text", response.text));
      parts.push(article);
    }
    return parts;
  }

  function closeDetail() {
    const detail = $("detail");
    detail.hidden = true;
    delete detail.dataset.instructionId;
    state.opened = -1;
    scheduleDraw(false);
  }

  // ---- selection
  function updateSelection() {
    let count = 0;
    let offMap = 0;
    for (let i = 0; i < n; i++) {
      count += state.selected[i];
      offMap += state.selected[i] & (1 - onMap[i]);
    }
    state.selectedCount = count;
    // Only a view beside the map can select an instruction that is not on the map.
    const elsewhere = offMap ? ` (${offMap.toLocaleString()} not on the map)` : "";
    $("selection-count").textContent = count
      ? `${count.toLocaleString()} instructions selected${elsewhere}`
      : "nothing selected";
    $("export").disabled = count === 0;
    $("clear").disabled = count === 0;
    $("select-commands").hidden = count === 0;
    if (count) {
      state.exportText = selectedIds().map((id) => JSON.stringify({ instruction_id: id }) + "\n").join("");
      state.exportName = exportFileName(state.exportText, count);
      const commands = selectCommands(state.exportName);
      $("command-include").textContent = commands.include;
      $("command-exclude").textContent = commands.exclude;
    }
    updateFlags();
  }

  function selectedIds() {
    const ids = [];
    for (let i = 0; i < n; i++) if (state.selected[i]) ids.push(ins.id[i]);
    return ids;
  }

  // FNV-1a, 32 bits: the export is named by its content, so that the command lines shown for a selection
  // never name the file an earlier, different selection was saved under.
  function fnv1a(text) {
    let hash = 0x811c9dc5;
    for (let k = 0; k < text.length; k++) {
      hash ^= text.charCodeAt(k);
      hash = Math.imul(hash, 0x01000193);
    }
    return (hash >>> 0).toString(16).padStart(8, "0");
  }

  function exportFileName(text, count) {
    return `${String(meta.name).replace(/[^\w.-]+/g, "_")}-selection-${count}-${fnv1a(text)}.jsonl`;
  }

  // As Python's shlex.quote: a run folder with spaces or quotes pastes into a shell as one word.
  function shellQuote(word) {
    return /^[\w@%+=:,./-]+$/.test(word) ? word : "'" + word.replace(/'/g, "'\"'\"'") + "'";
  }

  // The commands that read the export back: --strategy full keeps every selected instruction (the default
  // strategy, high_mean, would keep only the aligned ones among them).
  function selectCommands(file) {
    const run = shellQuote(String(meta.run_dir));
    return {
      include: `admap select ${run} --strategy full --include-ids ${shellQuote(file)}`,
      exclude: `admap select ${run} --exclude-ids ${shellQuote(file)}`,
    };
  }

  function exportSelection() {
    const url = URL.createObjectURL(new Blob([state.exportText], { type: "application/x-ndjson" }));
    const link = element("a");
    link.href = url;
    link.download = state.exportName;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // The clipboard where the page may write to it; else the command is selected, for Ctrl+C.
  function copyCommand(button) {
    const code = $(button.dataset.copy);
    const say = (text) => {
      button.textContent = text;
      setTimeout(() => (button.textContent = "copy"), 2000);
    };
    const selectIt = () => {
      window.getSelection().selectAllChildren(code);
      say("press Ctrl+C");
    };
    if (navigator.clipboard) navigator.clipboard.writeText(code.textContent).then(() => say("copied"), selectIt);
    else selectIt();
  }

  // ---- search: the page's own texts, or the server's (whole) for a served page.
  let lowered = null;
  let searchNumber = 0;

  function showMatches(query, indices, snippetOf) {
    state.matches.fill(0);
    const results = $("results");
    results.replaceChildren();
    let counted = 0;
    indices.forEach((i, k) => {
      state.matches[i] = 1;
      counted += onMap[i];
      if (k >= RESULTS_SHOWN) return;
      const item = element("li");
      const button = element("button", null, snippet(snippetOf(i, k), 120) + (onMap[i] ? "" : " (not on the map)"));
      button.type = "button";
      button.addEventListener("click", () => openDetail(i));
      item.append(button);
      results.append(item);
    });
    const count = indices.length;
    state.matchCount = count;
    const shown = count > RESULTS_SHOWN ? ` (first ${RESULTS_SHOWN} listed)` : "";
    const cut = !served && meta.text_limit !== null ? "; shortened texts are searched as shortened" : "";
    $("search-count").textContent = query
      ? `${count.toLocaleString()} matches, ${counted.toLocaleString()} on the map${shown}${cut}`
      : "";
    $("results-section").hidden = !query;
    updateFlags();
  }

  function runSearch() {
    const query = $("search").value.trim().toLowerCase();
    const number = ++searchNumber;
    if (!query) {
      showMatches("", [], null);
      return;
    }
    if (served) {
      fetch(`/api/search?q=${encodeURIComponent(query)}`)
        .then((response) => response.json())
        .then((found) => {
          const answer = unpack(found.indices);
          if (number === searchNumber) showMatches(query, Array.from(answer), (i, k) => found.texts[k] || "");
        });
      return;
    }
    textsReady.then(() => {
      if (number !== searchNumber || !texts.loaded) return;
      lowered = lowered || texts.text.map((text) => (text || "").toLowerCase());
      const indices = [];
      for (let i = 0; i < n; i++) if (lowered[i].includes(query) || ins.id[i].toLowerCase() === query) indices.push(i);
      showMatches(query, indices, (i) => texts.text[i] || "");
    });
  }

  // ---- tools and controls
  function setTool(tool) {
    state.tool = tool;
    for (const button of document.querySelectorAll("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
    for (const panel of panels) panel.root.classList.toggle("pan", tool === "pan");
  }

  for (const button of document.querySelectorAll("[data-tool]")) {
    button.addEventListener("click", () => setTool(button.dataset.tool));
  }
  $("reset").addEventListener("click", () => {
    for (const panel of panels) panel.resetView();
  });
  $("export").addEventListener("click", exportSelection);
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", () => copyCommand(button));
  }
  $("clear").addEventListener("click", () => {
    state.selected.fill(0);
    updateSelection();
  });
  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDetail();
  });
  let searchTimer = 0;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 150);
  });
  const select = $("colour");
  data.colourings.forEach((mode, k) => {
    const option = element("option", null, mode.label);
    option.value = String(k);
    option.dataset.key = mode.key;
    select.append(option);
  });
  select.addEventListener("change", () => applyColouring(data.colourings[Number(select.value)]));

  // ---- header
  function subtitle() {
    const parts = [`score: ${meta.scorer}`];
    parts.push(`${meta.on_map.toLocaleString()} of ${meta.instructions_shown.toLocaleString()} instructions on the map`);
    if (meta.seed !== null) {
      parts.push(`a random ${meta.instructions_shown.toLocaleString()} of ${meta.instructions_total.toLocaleString()} (seed ${meta.seed})`);
    }
    const t = meta.thresholds;
    if (t.variance !== null || t.mean !== null) {
      parts.push(`thresholds (${meta.region_method}): variance ${formatNumber(t.variance)}, mean ${formatNumber(t.mean)}`);
    }
    if (served) parts.push("texts whole, from the run's tables (served)");
    else if (meta.text_limit !== null) {
      parts.push(
        `whole texts for ${meta.instructions_whole.toLocaleString()} instructions (suspects, region boundaries, a ` +
          `sample); ${meta.texts_shortened.toLocaleString()} other texts shortened to ` +
          `${meta.text_limit.toLocaleString()} characters (admap view --serve shows all whole)`,
      );
    }
    if (!meta.diagnosed) parts.push("no suspect flags (run admap diagnose, then admap view)");
    return parts.join(" · ");
  }

  $("title").textContent = meta.title;
  $("subtitle").textContent = subtitle();
  if (n > mappedCount) {
    let placed = 0;
    for (let i = 0; i < n; i++) placed += !onMap[i] && panels.some((panel) => panel.on[i]) ? 1 : 0;
    const where = besides.length === 1 ? `the ${besides[0].name} view shows` : "the other views show";
    const shown = placed ? `; ${where} ${placed === n - mappedCount ? "them" : placed.toLocaleString()}` : "";
    $("unmapped-note").textContent = `${(n - mappedCount).toLocaleString()} instructions are not on the map (too few scored responses); search finds them${shown}.`;
  }

  // ---- start
  setTool("pan");
  applyColouring(data.colourings[0]);
  updateFlags();

  function drawnIds(panel, wanted) {
    const ids = [];
    for (let i = 0; i < n; i++) if (panel.on[i] && wanted(i)) ids.push(ins.id[i]);
    return ids;
  }

  // A hook for tests and scripts: where a point (or any position) is drawn in a panel ("map", the default,
  // "semantic" or "dynamics"), what each panel draws, what is selected and found.
  function inPage(panelName, where) {
    const panel = panelNamed(panelName);
    if (!panel) return null;
    panel.ensureLayout();
    const point = where(panel);
    if (!point) return null;
    const rect = panel.overlay.getBoundingClientRect();
    return { x: rect.left + point.x, y: rect.top + point.y };
  }

  const api = {
    ready: false,
    // performance.now() at the first paint, and when the page was ready (its texts inflated, where it has them).
    paintedMs: null,
    readyMs: null,
    texts: meta.texts,
    renderer: mapPanel.renderer.kind,
    renderers: Object.fromEntries(panels.map((panel) => [panel.name, panel.renderer.kind])),
    count: n,
    onMap: mappedCount,
    panels: panels.map((panel) => panel.name),
    drawn: Object.fromEntries(panels.map((panel) => [panel.name, panel.count])),
    // What each panel's last frame drew: "points" or "density", how many points in view, at what size.
    layers: () => Object.fromEntries(panels.map((p) => [p.name, { layer: p.layer, visible: p.visible, size: p.size }])),
    timings,
    indexOf: (id) => ins.id.indexOf(id),
    // Instruction i's point, or null where that panel does not draw it.
    project: (i, panel) => inPage(panel, (p) => p.project(i)),
    // The map's (variance, mean), the semantic view's (x, y), the dynamics view's (variability, confidence).
    toScreen: (x, y, panel) => inPage(panel, (p) => p.toScreen(x, y)),
    // Open instruction i's detail, as a click on its point does.
    open: (i) => openDetail(i),
    selectedIds,
    matchedIds: () => ins.id.filter((_, i) => state.matches[i]),
    // The ids a panel draws highlighted: selected, or found by the search.
    highlightedIds: (panel) => drawnIds(panelNamed(panel), (i) => flags[i] > 0),
  };
  window.admapView = api;
  drawFrame();
  requestAnimationFrame(() => {
    api.paintedMs = performance.now();
    document.documentElement.dataset.painted = "true";
    textsReady.then(() => {
      api.ready = true;
      api.readyMs = performance.now();
      document.documentElement.dataset.ready = "true";
    });
  });
})();
