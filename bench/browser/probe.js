/*
 * cometbench page probe: installed in every page of a browser actor before the page's own scripts
 * (Playwright init script), configured by window.__cometbenchProbeConfig (bench/browser/page.py).
 *
 * 1. Shim A (real-video-client.md 2, "Shims"), unless config.shim is false: URL.createObjectURL
 *    given a MediaStream returns a token ("mediastream:<id>") and remembers the stream; the
 *    HTMLMediaElement src setter given a remembered token sets srcObject instead.  Chromium 156
 *    removed createObjectURL(MediaStream), which cometVideoApi.js calls in acceptCall.
 * 2. WebSocket addresses: new WebSocket(url) whose scheme://host:port starts with a configured
 *    prefix is opened at the replacement (config.wsRewrite: [[from, to], ...]) -- the page's comet
 *    node and the SIP node of the push reach the actor's own relays.  The page sees its own URL
 *    strings everywhere except WebSocket.url.
 * 3. Observation, never a change of behaviour: comet frames both ways (push, subscription,
 *    callPipe events, serverInfo), SIP frames of the newest UA's socket (REGISTER 200, INVITE,
 *    200 OK, BYE), getUserMedia in all three forms, the peer connections (remote tracks, ICE
 *    state), media elements given a remote stream and their first decoded frame
 *    (requestVideoFrameCallback), fetch/XHR to the app's call URL, and the page's cometVideoApi
 *    (start's callbacks that the page defined, acceptCall, hangup, the mute and hold calls).
 *    Everything is reported through the exposed binding __cometbench_emit with the page's clock
 *    (performance.timeOrigin and performance.now(), which the bench maps onto its own clock).
 */
(function () {
  'use strict';
  if (window.top !== window || window.__cometbenchProbe) { return; }
  var cfg = window.__cometbenchProbeConfig || {};
  var probe = window.__cometbenchProbe = {events: 0, errors: []};

  function now() { return performance.now(); }

  function plain(value, depth) {
    depth = depth === undefined ? 4 : depth;
    if (value === null || value === undefined) { return value === undefined ? null : value; }
    var type = typeof value;
    if (type === 'number') { return isFinite(value) ? value : null; }
    if (type === 'string' || type === 'boolean') { return value; }
    if (type !== 'object' || depth <= 0) { return null; }
    if (Array.isArray(value)) { return value.slice(0, 50).map(function (v) { return plain(v, depth - 1); }); }
    if (typeof Node !== 'undefined' && value instanceof Node) { return null; }
    if (typeof MediaStream !== 'undefined' && value instanceof MediaStream) { return null; }
    var proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) { return null; }   // class instances (JsSIP, ...)
    var out = {};
    Object.keys(value).slice(0, 60).forEach(function (k) {
      var v = plain(value[k], depth - 1);
      if (v !== null || value[k] === null) { out[k] = v; }
    });
    return out;
  }

  function emit(kind, data) {
    data = data || {};
    data.k = kind;
    data.o = performance.timeOrigin;
    if (data.n === undefined) { data.n = now(); }
    probe.events++;
    try {
      var p = window.__cometbench_emit(data);
      if (p && p.catch) { p.catch(function () {}); }
    } catch (e) {
      probe.errors.push(String(e));
    }
  }
  probe.emit = emit;

  // --- 1. shim A -----------------------------------------------------------------------------------
  var streamTokens = new Map();
  if (cfg.shim !== false) {
    var originalCreate = URL.createObjectURL;
    var originalRevoke = URL.revokeObjectURL;
    URL.createObjectURL = function (obj) {
      if (typeof MediaStream !== 'undefined' && obj instanceof MediaStream) {
        var token = 'mediastream:' + obj.id;
        streamTokens.set(token, obj);
        return token;
      }
      return originalCreate.apply(this, arguments);
    };
    URL.revokeObjectURL = function (url) {
      if (streamTokens.has(url)) { streamTokens.delete(url); return undefined; }
      return originalRevoke.apply(this, arguments);
    };
    var srcDescriptor = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'src');
    Object.defineProperty(HTMLMediaElement.prototype, 'src', {
      configurable: true, enumerable: srcDescriptor.enumerable, get: srcDescriptor.get,
      set: function (value) {
        if (typeof value === 'string' && streamTokens.has(value)) {
          this.srcObject = streamTokens.get(value);
          return;
        }
        srcDescriptor.set.call(this, value);
      }
    });
  }

  // --- state kept by the probe ------------------------------------------------------------------------
  var pipes = {};                 // callPipe -> {handling: bool, subscribed: bool, sent: {}, seen: {}}
  var seenUuids = {};             // _cometApi_uuid of received callPipe events (the page keeps one copy)
  var sentUuids = {};             // _cometApi_uuid of our own sends (repeats are copies)
  var sipSockets = 0;
  var currentSip = null;          // id of the SIP socket of the newest UA (created after acceptCall)
  var expectSip = false;
  var connectingIface = null;     // the JsSIP WebSocketInterface whose connect() is running
  var sipGeneration = 0;          // one per UA created after acceptCall; its interface keeps it
  var remoteTracks = {};          // track id -> true (tracks of any peer connection's receivers)
  var watchedPcs = [];

  function stripslashes(text) {
    return (text + '').replace(/\\(.?)/g, function (s, c) {
      if (c === '\\') { return '\\'; }
      if (c === '0') { return '\u0000'; }
      return c;
    });
  }

  function decode(data) {
    if (typeof data !== 'string') { return data; }
    var texts = [data.replace(/\\'/g, "'"), stripslashes(data)];
    for (var i = 0; i < texts.length; i++) {
      try { return JSON.parse(texts[i]); } catch (e) { /* next */ }
    }
    return data;
  }

  // --- 2 + 3. WebSockets ------------------------------------------------------------------------------
  var rewrites = cfg.wsRewrite || [];

  function rewrite(url) {
    for (var i = 0; i < rewrites.length; i++) {
      var from = rewrites[i][0];
      if (url.indexOf(from) === 0 && (url.length === from.length || '/?#'.indexOf(url.charAt(from.length)) !== -1)) {
        return rewrites[i][1] + url.substring(from.length);
      }
    }
    return url;
  }

  function cometIncoming(text) {
    var lines = String(text).replace(/^\s+|\s+$/, '').split('\n');
    lines.forEach(function (line) {
      var msg;
      try { msg = JSON.parse(line.replace(/\\'/g, "'")); } catch (e) { return; }
      if (!msg || typeof msg !== 'object') { return; }
      if (msg.event === 'serverInfo' && msg.pipe === 'sys') {
        emit('server_info', {authorized: msg.authorized === true || msg.authorized === 'true'});
        return;
      }
      if (msg.event === 'sys_sipCall' && msg.pipe === 'msg') {
        var data = decode(msg.data);
        if (!data || !data.sys) { return; }
        var pipe = String(data.sys.callPipe);
        pipes[pipe] = pipes[pipe] || {subscribed: false, sent: {}};
        pipes[pipe].handling = true;
        emit('push', {sys: plain(data.sys), message: plain(decode(data.message)), fromQueue: !!msg.fromQueue});
        scheduleState();
        return;
      }
      var entry = pipes[msg.pipe];
      if (entry && msg.event !== 'answer') {
        var payload = decode(msg.data);
        payload = payload && typeof payload === 'object' ? payload : {};
        var uuid = payload._cometApi_uuid;
        if (uuid) {
          if (seenUuids[uuid]) { return; }
          seenUuids[uuid] = true;
        }
        if (!entry.handling) { return; }
        var out = {pipe: msg.pipe, event: msg.event, user_id: msg.user_id};
        ['status', 'type', 'callKey', 'isMute', 'isHold'].forEach(function (k) {
          if (payload[k] !== undefined) { out[k] = payload[k]; }
        });
        emit('received', out);
        scheduleState();
      }
    });
  }

  function cometOutgoing(text) {
    var parts = String(text).split('\n');
    if (parts[0] === 'subscription') {
      parts.slice(1).forEach(function (name) {
        var entry = pipes[name];
        if (entry && !entry.subscribed) {
          entry.subscribed = true;
          emit('mark', {name: 'subscribed', pipe: name});
        }
      });
      return;
    }
    if (parts[0] !== 'web_pipe2' || parts.length < 5) { return; }
    var pipe = parts[1];
    var event = parts[2];
    var payload;
    try { payload = JSON.parse(parts.slice(4).join('\n')); } catch (e) { payload = {}; }
    var uuid = payload && payload._cometApi_uuid;
    if (uuid) {
      if (sentUuids[uuid]) { return; }      // the second and third copies
      sentUuids[uuid] = true;
    }
    emit('sent', {pipe: pipe, event: event, status: payload && payload.status});
    if (event === 'accept') {
      emit('mark', {name: 'accept_sent', pipe: pipe});
    } else if (event === 'mediaStart' && payload && payload.status === 'self') {
      emit('mark', {name: 'media_self', pipe: pipe});
    } else if (event === 'out') {
      emit('mark', {name: 'out_sent', pipe: pipe, status: payload && payload.status});
      if (pipes[pipe]) { pipes[pipe].handling = false; }   // hangup() drops the page's handler
    }
  }

  function sipHeader(text, name) {
    var head = text.split('\r\n\r\n', 1)[0];
    var re = new RegExp('^' + name + ':[ \\t]*(.*)$', 'im');
    var m = re.exec(head);
    return m ? m[1].trim() : '';
  }

  function sipFrame(id, direction, text) {
    if (typeof text !== 'string') { return; }
    var first = text.split('\r\n', 1)[0];
    var cseq = sipHeader(text, 'CSeq').split(/\s+/)[1] || '';
    var current = id === currentSip;
    var info = {sock: id, current: current, dir: direction, line: first, cseq: cseq,
                callid: sipHeader(text, 'Call-ID') || sipHeader(text, 'i')};
    if (direction === 'in' && /^SIP\/2\.0 /.test(first)) {
      info.status = Number(first.split(' ')[1]);
    } else {
      info.method = first.split(' ')[0];
    }
    emit('sip', info);
  }

  var OriginalWebSocket = window.WebSocket;
  var WebSocketProxy = new Proxy(OriginalWebSocket, {
    construct: function (target, args, newTarget) {
      var original = String(args[0]);
      args = Array.prototype.slice.call(args);
      args[0] = rewrite(original);
      var ws = Reflect.construct(target, args, newTarget);
      var protocols = args[1];
      var isSip = protocols === 'sip' || (Array.isArray(protocols) && protocols.indexOf('sip') !== -1);
      var isComet = !isSip && original.indexOf('/ws/sesion=') !== -1;
      if (isSip) {
        var id = ++sipSockets;
        var iface = connectingIface;
        if (expectSip) {
          expectSip = false;
          currentSip = id;
          if (iface) { iface.__cometbenchGeneration = ++sipGeneration; }
          emit('mark', {name: 'ua_created'});
        } else if (iface && iface.__cometbenchGeneration && iface.__cometbenchGeneration === sipGeneration) {
          currentSip = id;              // the newest UA reconnects (JsSIP's transport recovery): its socket
        }
        emit('sip_socket', {sock: id, url: original, current: id === currentSip});
        ws.addEventListener('open', function () {
          emit('sip_open', {sock: id, current: id === currentSip});
        });
        ws.addEventListener('close', function (e) {
          emit('sip_close', {sock: id, current: id === currentSip, code: e.code, clean: e.wasClean});
        });
        ws.addEventListener('message', function (e) { sipFrame(id, 'in', e.data); });
        var sipSend = ws.send;
        ws.send = function (data) { sipFrame(id, 'out', data); return sipSend.apply(this, arguments); };
      } else if (isComet) {
        emit('comet_socket', {url: original});
        ws.addEventListener('open', function () { emit('comet_open', {}); });
        ws.addEventListener('close', function (e) { emit('comet_close', {code: e.code, clean: e.wasClean}); });
        ws.addEventListener('message', function (e) { cometIncoming(e.data); });
        var cometSend = ws.send;
        ws.send = function (data) { cometOutgoing(data); return cometSend.apply(this, arguments); };
      }
      return ws;
    }
  });
  window.WebSocket = WebSocketProxy;

  // --- getUserMedia, all three forms ------------------------------------------------------------------
  function gumResult(ok, error) {
    emit('gum', {ok: ok, error: error ? String(error.name || error) + (error.message ? ': ' + error.message : '') : null});
  }

  ['getUserMedia', 'webkitGetUserMedia'].forEach(function (name) {
    var original = navigator[name];
    if (typeof original !== 'function') { return; }
    navigator[name] = function (constraints, ok, fail) {
      return original.call(navigator, constraints, function (stream) {
        gumResult(true);
        if (ok) { return ok.apply(this, arguments); }
      }, function (error) {
        gumResult(false, error);
        if (fail) { return fail.apply(this, arguments); }
      });
    };
  });
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    var originalGum = navigator.mediaDevices.getUserMedia;
    navigator.mediaDevices.getUserMedia = function () {
      var p = originalGum.apply(this, arguments);
      p.then(function () { gumResult(true); }, function (error) { gumResult(false, error); });
      return p;
    };
  }

  // --- peer connections (by prototype: rtcninja uses webkitRTCPeerConnection, the same constructor) --
  function watchPc(pc) {
    if (watchedPcs.indexOf(pc) !== -1) { return; }
    watchedPcs.push(pc);
    var sawTrack = false;
    pc.addEventListener('track', function (e) {
      remoteTracks[e.track.id] = true;
      if (!sawTrack) {
        sawTrack = true;
        emit('mark', {name: 'addstream', tracks: (e.streams && e.streams[0] ? e.streams[0].getTracks() : [e.track])
          .map(function (t) { return t.kind; })});
      }
    });
    pc.addEventListener('iceconnectionstatechange', function () {
      emit('ice', {state: pc.iceConnectionState});
    });
    pc.addEventListener('connectionstatechange', function () {
      // 'connected': ICE and DTLS are both up (the DTLS handshake is the last to finish)
      emit('pc', {state: pc.connectionState});
    });
  }

  // --- received media (only once a peer connection is connected: real media) ------------------------
  // Every 500 ms: per connected peer connection, the inbound video's decoded frames, freezes and frame
  // rate, and the inbound audio's total energy and level (getStats, inbound-rtp).
  function sampleMedia() {
    watchedPcs.forEach(function (pc, index) {
      if (pc.connectionState !== 'connected') { return; }
      pc.getStats().then(function (report) {
        var out = {pc: index, video: null, audio: null};
        report.forEach(function (s) {
          if (s.type !== 'inbound-rtp') { return; }
          if (s.kind === 'video') {
            out.video = {frames: s.framesDecoded || 0, received: s.framesReceived || 0,
              freezes: s.freezeCount || 0, freeze_s: s.totalFreezesDuration || 0, fps: s.framesPerSecond || 0,
              width: s.frameWidth || 0, height: s.frameHeight || 0};
          } else if (s.kind === 'audio') {
            out.audio = {energy: s.totalAudioEnergy || 0, level: s.audioLevel || 0,
              duration: s.totalSamplesDuration || 0};
          }
        });
        emit('media_stats', out);
      }, function () {});
    });
  }
  setInterval(sampleMedia, 500);
  var pcProto = window.RTCPeerConnection && window.RTCPeerConnection.prototype;
  if (pcProto) {
    ['setLocalDescription', 'setRemoteDescription', 'createOffer', 'addStream', 'addTrack'].forEach(function (name) {
      var original = pcProto[name];
      if (typeof original !== 'function') { return; }
      pcProto[name] = function () {
        watchPc(this);
        return original.apply(this, arguments);
      };
    });
  }

  // --- media elements: a remote stream attached, its first decoded frame ------------------------------
  function isRemote(stream) {
    return !!(stream && stream.getTracks && stream.getTracks().some(function (t) { return remoteTracks[t.id]; }));
  }
  var srcObjectDescriptor = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'srcObject');
  Object.defineProperty(HTMLMediaElement.prototype, 'srcObject', {
    configurable: true, enumerable: srcObjectDescriptor.enumerable, get: srcObjectDescriptor.get,
    set: function (value) {
      srcObjectDescriptor.set.call(this, value);
      if (!isRemote(value)) { return; }
      var element = this;
      if (element.tagName === 'VIDEO') {
        emit('mark', {name: 'video_attached', element: element.id || ''});
        if (typeof element.requestVideoFrameCallback === 'function') {
          element.requestVideoFrameCallback(function (t, meta) {
            emit('remote_frame', {n: now(), width: meta.width, height: meta.height, element: element.id || ''});
          });
        }
      }
    }
  });

  // --- the app's backend: the call request answered -------------------------------------------------
  var callUrl = cfg.callUrl ? new RegExp(cfg.callUrl) : null;
  var authUrl = cfg.authUrl ? new RegExp(cfg.authUrl) : null;

  function backendDone(url, status) {
    url = String(url);
    if (callUrl && callUrl.test(url)) { emit('backend', {which: 'call', status: status}); }
    if (authUrl && authUrl.test(url)) { emit('backend', {which: 'auth', status: status}); }
  }
  if (window.fetch) {
    var originalFetch = window.fetch;
    window.fetch = function (input) {
      var url = typeof input === 'string' ? input : (input && input.url) || String(input);
      var p = originalFetch.apply(this, arguments);
      p.then(function (r) { backendDone(url, r.status); }, function () { backendDone(url, 0); });
      return p;
    };
  }
  var xhrOpen = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url) {
    var xhr = this;
    xhr.addEventListener('loadend', function () { backendDone(url, xhr.status); });
    return xhrOpen.apply(this, arguments);
  };

  // --- the click on Join (where backend_invite starts, page time) -------------------------------------
  if (cfg.joinSelector) {
    document.addEventListener('click', function (e) {
      try {
        if (e.target && e.target.closest && e.target.closest(cfg.joinSelector)) {
          emit('mark', {name: 'join_click', n: e.timeStamp});
        }
      } catch (err) { /* not a CSS selector: the bench marks the click itself */ }
    }, true);
  }

  // --- the page's cometVideoApi --------------------------------------------------------------------
  var CALLBACKS = ['onCall', 'onCallAccept', 'onCallStart', 'onCallEnd', 'onOut', 'onIn', 'toggleMute',
                   'onToggleMute', 'toggleHold'];

  function wrapMethod(obj, name, around) {
    var original = obj[name];
    if (typeof original !== 'function' || original.__cometbench) { return; }
    var wrapped = function () { return around.call(this, original, arguments); };
    wrapped.__cometbench = true;
    obj[name] = wrapped;
  }

  function wrapVideoApi(api) {
    if (!api || typeof api !== 'object' || api.__cometbenchWrapped) { return; }
    try { Object.defineProperty(api, '__cometbenchWrapped', {value: true}); } catch (e) { return; }
    wrapMethod(api, 'start', function (original, args) {
      var opt = args[0];
      if (opt && typeof opt === 'object') {
        CALLBACKS.forEach(function (name) {
          var fn = opt[name];
          if (typeof fn !== 'function' || fn.__cometbench) { return; }
          var wrapped = function (arg) {
            emit('callback', {name: name, arg: plain(arg, 5)});
            try {
              return fn.apply(this, arguments);
            } finally {
              scheduleState();
            }
          };
          wrapped.__cometbench = true;
          opt[name] = wrapped;
        });
      }
      return original.apply(this, args);
    });
    wrapMethod(api, 'acceptCall', function (original, args) {
      expectSip = true;
      emit('mark', {name: 'accept_call'});
      try { return original.apply(this, args); } finally { scheduleState(); }
    });
    wrapMethod(api, 'hangup', function (original, args) {
      try { return original.apply(this, args); } finally {
        emit('mark', {name: 'hangup'});
        scheduleState();
      }
    });
    ['muteAudio', 'muteVideo', 'toggleMute', 'toggleHold', 'busy'].forEach(function (name) {
      wrapMethod(api, name, function (original, args) {
        try { return original.apply(this, args); } finally { scheduleState(); }
      });
    });
  }

  // JsSIP's transport recovery opens a new WebSocket from the same WebSocketInterface: knowing whose
  // connect() is running tells the newest UA's reconnects (still "current") from an older UA's
  function wrapJsSIP(lib) {
    var Iface = lib && lib.WebSocketInterface;
    if (!Iface || !Iface.prototype || Iface.prototype.__cometbenchWrapped) { return; }
    var connect = Iface.prototype.connect;
    if (typeof connect !== 'function') { return; }
    Iface.prototype.connect = function () {
      var previous = connectingIface;
      connectingIface = this;
      try { return connect.apply(this, arguments); } finally { connectingIface = previous; }
    };
    try { Object.defineProperty(Iface.prototype, '__cometbenchWrapped', {value: true}); } catch (e) { /* frozen */ }
  }

  var jssipLib;
  try {
    Object.defineProperty(window, 'JsSIP', {
      configurable: true, enumerable: true,
      get: function () { return jssipLib; },
      set: function (value) { jssipLib = value; try { wrapJsSIP(value); } catch (e) { probe.errors.push('JsSIP wrap: ' + e); } }
    });
  } catch (e) { probe.errors.push('JsSIP trap: ' + e); }

  var videoApi;
  try {
    Object.defineProperty(window, 'cometVideoApi', {
      configurable: true, enumerable: true,
      get: function () { return videoApi; },
      set: function (value) { videoApi = value; wrapVideoApi(value); }
    });
  } catch (e) { probe.errors.push('cometVideoApi trap: ' + e); }
  document.addEventListener('load', function (e) {
    if (e.target && e.target.tagName === 'SCRIPT') {
      wrapVideoApi(window.cometVideoApi);
      try { wrapJsSIP(window.JsSIP); } catch (err) { probe.errors.push('JsSIP wrap: ' + err); }
    }
  }, true);

  // --- state snapshots (what the bench's mirror of the page shows) -------------------------------------
  var stateTimer = null;
  var lastState = '';

  function state() {
    var api = window.cometVideoApi;
    var out = {inCall: false, active: null, mute: null, hold: false, api: !!api};
    if (!api) { return out; }
    try {
      out.inCall = typeof api.isInCall === 'function' ? !!api.isInCall() : !!(api.opt && api.opt.activeCallEvent);
      var active = api.opt && api.opt.activeCallEvent;
      if (active && active.data && active.data.sys) {
        out.active = {pipe: String(active.data.sys.callPipe), callKey: String(active.data.sys.callKey),
                      room: String(active.data.sys.conference_name), sipNumber: String(active.data.sys.sipNumber)};
        var session = active.jssipRTCSession;
        if (session && typeof session.isOnHold === 'function') {
          out.hold = !!session.isOnHold().local;
        }
      }
      if (typeof api.isMute === 'function') {
        var mute = api.isMute();
        out.mute = mute ? {audio: !!mute.audio, video: !!mute.video} : null;
      }
    } catch (e) {
      out.error = String(e);
    }
    return out;
  }

  function scheduleState() {
    if (stateTimer !== null) { return; }
    stateTimer = setTimeout(function () {
      stateTimer = null;
      var s = state();
      var text = JSON.stringify(s);
      if (text !== lastState) {
        lastState = text;
        emit('state', {state: s});
      }
    }, 0);
  }
  probe.state = state;
  probe.scheduleState = scheduleState;
  setInterval(scheduleState, 1000);

  window.addEventListener('error', function (e) { emit('page_error', {message: String(e.message)}); });
  window.addEventListener('unhandledrejection', function (e) { emit('page_error', {message: 'unhandled: ' + String(e.reason)}); });
  emit('probe', {shim: cfg.shim !== false, rewrites: rewrites.length});
})();
