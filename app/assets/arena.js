// musicrl arena: measures how long each clip was actually played, and asks the server to
// enable the vote buttons once both clips were heard for the minimum time.
//
// Gradio's audio player (WaveSurfer) keeps its <audio> element inside a shadow root, where
// media events do not reach document-level listeners. So we hook HTMLMediaElement.play:
// the first time any media element plays we attach timeupdate/seeking listeners to it, and
// find which arena slot it belongs to by walking up through shadow hosts to #arena-clip-a/b.
// Only forward playback in small steps counts (seeking ahead does not). Time is counted per
// pair: reset() (a new pair is requested) marks every source seen so far as stale, and
// loaded() (the pair arrived) starts counting. The server checks the reported times again,
// against the time elapsed since it served the pair.
(function () {
  if (window.musicrlArena) return;
  var cfg = window.MUSICRL_CONFIG || { minListen: 3 };
  var st = { listened: { a: 0, b: 0 }, last: new WeakMap(), stale: new Set(), els: new Set(),
             voted: false, loaded: false, lastUnlock: 0 };

  function slotOf(el) {
    var n = el;
    while (n) {
      if (n.closest) {
        var c = n.closest('#arena-clip-a, #arena-clip-b');
        if (c) return c.id === 'arena-clip-a' ? 'a' : 'b';
      }
      var r = n.getRootNode && n.getRootNode();
      if (!r || !r.host) return null;
      n = r.host;
    }
    return null;
  }

  function render() {
    var need = cfg.minListen;
    var box = document.getElementById('arena-listen-status');
    if (!box) return;
    if (!st.loaded) { box.textContent = ''; return; }
    var fmt = function (x) { return Math.min(x, need).toFixed(1); };
    box.textContent = st.voted ? '' : ('Listened: A ' + fmt(st.listened.a) + ' s, B ' +
      fmt(st.listened.b) + ' s of ' + need + ' s each needed to vote.');
  }

  function maybeUnlock() {
    render();
    var need = cfg.minListen;
    if (st.voted || !st.loaded || st.listened.a < need || st.listened.b < need) return;
    var btn = document.getElementById('vote-a');
    var now = Date.now();
    if (btn && btn.disabled && now - st.lastUnlock > 1000) {
      st.lastUnlock = now;
      var u = document.getElementById('arena-unlock');
      if (u) u.click();
    }
  }

  function onTime(ev) {
    var el = ev.target;
    var slot = slotOf(el);
    if (!slot) return;
    var src = el.currentSrc || el.src;
    if (!st.loaded || st.stale.has(src)) { st.last.delete(el); return; }
    var t = el.currentTime, prev = st.last.get(el);
    st.last.set(el, t);
    if (prev === undefined || el.seeking) return;
    var d = t - prev;
    if (d > 0 && d < 1.0) st.listened[slot] += d * Math.min(1, 1 / (el.playbackRate || 1));
    maybeUnlock();
  }

  function hook(el) {
    if (el.__musicrlHooked) return;
    el.__musicrlHooked = true;
    st.els.add(el);
    el.addEventListener('timeupdate', onTime);
    el.addEventListener('seeking', function () { st.last.delete(el); });
    el.addEventListener('ended', function () { st.last.delete(el); });
  }

  var play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    try { hook(this); } catch (e) { /* never break playback */ }
    return play.apply(this, arguments);
  };

  window.musicrlArena = {
    reset: function () {
      st.els.forEach(function (el) { if (el.currentSrc) st.stale.add(el.currentSrc); });
      st.listened = { a: 0, b: 0 };
      st.voted = false;
      st.loaded = false;
      st.lastUnlock = 0;
      render();
    },
    loaded: function () { st.loaded = true; maybeUnlock(); },
    voted: function () { st.voted = true; render(); },
    listened: function (slot) { return st.listened[slot]; },
    minListen: function () { return cfg.minListen; }
  };
})();
