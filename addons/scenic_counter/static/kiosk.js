// The self-service kiosk's touch screen (no keyboard).
//   Buy: slot -> ticket types (+/-) -> each real-name ticket's ID card on
//   the reader -> QR on screen, scanned with the visitor's wallet -> paid
//   (polled) -> tickets printed.      Pick up: the ID card -> printed.
// The kiosk's channel key (and sale point id, with several kiosks on one
// channel) and its IoT box's address and token are kept in this PC's
// local storage; the installer sets them once, e.g. by opening
// /<db>/scenic/kiosk#key=<channel key>&box=http://127.0.0.1:8100&token=...
// Without a box the page offers the demo's simulated card reader.
'use strict';
(function () {
  const db = document.body.dataset.db;
  const api = '/' + db + '/scenic/kiosk/v1';
  const IDLE_MS = 90000, POLL_MS = 1500, CARD_MS = 500;
  const T = {
    zh: {title: '自助售票', buy: '购票', pickup: '取票', lang: 'English',
      slot: '选择时段', left: '余', types: '选择票种', next: '下一步',
      back: '返回', total: '合计', tapcard: '请将身份证放在读卡区',
      of: '第', cards: '张', scan: '请用手机扫码支付', waiting: '等待支付…',
      paid: '支付成功', take: '请取走您的门票', printed: '已打印',
      none: '今天没有待取的门票', already: '已取过的订单', home: '返回首页',
      demo: '模拟刷卡（演示）', place: '放置身份证', simpay: '打开模拟支付页（演示）',
      setup: '本机尚未设置：请管理员设置售票机密钥'},
    en: {title: 'Self-service tickets', buy: 'Buy tickets', pickup: 'Pick up',
      lang: '中文', slot: 'Choose a time', left: 'left', types: 'Choose tickets',
      next: 'Next', back: 'Back', total: 'Total',
      tapcard: 'Place your ID card on the reader', of: 'card', cards: '',
      scan: 'Scan with your phone to pay', waiting: 'Waiting for payment…',
      paid: 'Paid', take: 'Please take your tickets', printed: 'Printed',
      none: 'No tickets to pick up today', already: 'orders picked up before',
      home: 'Home', demo: 'Simulated card (demo)', place: 'Place card',
      simpay: 'Open the simulated pay page (demo)',
      setup: 'This kiosk is not set up: ask staff to set its key'},
  };
  // One-time setup from the address's fragment (never sent to a server).
  if (location.hash.length > 1) {
    const setup = new URLSearchParams(location.hash.slice(1));
    for (const name of ['key', 'point', 'box', 'token']) {
      if (setup.has(name)) localStorage.setItem('scenic.kiosk.' + name, setup.get(name));
    }
    history.replaceState(null, '', location.pathname);
  }
  const setting = (name) => localStorage.getItem('scenic.kiosk.' + name);
  // The kiosk's box as the device registry names it (its sale point's
  // IoT box), else the installer's setting.
  const boxUrl = () => (state && state.box) || setting('box');
  let lang = 'zh', state = null, screen = 'home', slot = null, counts = {};
  let visitors = [], order = null, qr = null, result = null, message = '';
  let timers = [], idle = null, purchaseKey = null;
  const app = document.getElementById('app');
  const t = (k) => T[lang][k];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'on') for (const [e, f] of Object.entries(v)) node.addEventListener(e, f);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  function button(id, text, onclick, cls) {
    return el('button', {id: id, type: 'button', class: cls || 'big', on: {click: onclick}}, text);
  }
  function newKey() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  async function call(path, body) {
    const headers = {'Authorization': 'Bearer ' + setting('key'), 'Content-Type': 'application/json'};
    if (setting('point')) headers['X-Kiosk'] = setting('point');
    const response = await fetch(api + path, {method: body === undefined ? 'GET' : 'POST',
      headers: headers, body: body === undefined ? undefined : JSON.stringify(body)});
    const data = await response.json();
    if (!response.ok) throw new Error(data.error ? data.error.message : response.status);
    return data;
  }
  // The kiosk PC's IoT box: its ID card reader and printer (local API).
  async function box(path, body) {
    const response = await fetch(boxUrl() + path, {method: body === undefined ? 'GET' : 'POST',
      headers: {'Authorization': 'Bearer ' + (setting('token') || ''), 'Content-Type': 'application/json'},
      body: body === undefined ? undefined : JSON.stringify(body)});
    if (!response.ok) throw new Error('box ' + response.status);
    return response.json();
  }
  async function print(answer) {
    if (answer.printed || !answer.jobs.length || !boxUrl()) return answer.printed;
    try { return (await box('/print', {jobs: answer.jobs})).printed; } catch (e) { return 0; }
  }
  function stopTimers() { timers.forEach(clearInterval); timers = []; }
  function go(next) { stopTimers(); screen = next; message = ''; render(); }
  function reset() {
    slot = null; counts = {}; visitors = []; order = null; qr = null; result = null;
    purchaseKey = null; go('home');
  }
  function touched() {
    clearTimeout(idle);
    idle = setTimeout(reset, IDLE_MS);
  }
  document.addEventListener('pointerdown', touched);
  document.addEventListener('click', touched);
  function money(v) { return '¥' + Number(v).toFixed(2); }
  // The chosen slot's types (those admitting to its zone) at its prices.
  function slotTypes() {
    return state.types.filter((ty) => slot && slot.prices[ty.code] !== undefined)
      .map((ty) => Object.assign({}, ty, {price: slot.prices[ty.code]}));
  }
  function chosenTypes() { return slotTypes().filter((ty) => counts[ty.code] > 0); }
  function realNameNeeded() {
    return chosenTypes().reduce((n, ty) => n + (ty.real_name ? counts[ty.code] : 0), 0);
  }
  function total() {
    return chosenTypes().reduce((s, ty) => s + Number(ty.price) * counts[ty.code], 0);
  }

  // The ID card: the box's reader, polled; the demo's simulated one.
  function waitForCard(onCard) {
    if (!boxUrl()) return;
    let lastNumber = null;
    timers.push(setInterval(async () => {
      try {
        const read = await box('/idcard');
        const number = read.card ? read.card.id_number : null;
        if (number && number !== lastNumber) { lastNumber = number; onCard(read.card); }
        if (!number) lastNumber = null;
      } catch (e) { message = e.message; }
    }, CARD_MS));
  }
  function demoReader(onCard) {
    if (boxUrl()) return null;
    const input = el('input', {id: 'demo-card', inputmode: 'numeric', autocomplete: 'off'});
    return el('div', {class: 'demo'}, el('label', {}, t('demo'), input),
      button('demo-place', t('place'), () => { if (input.value.trim()) onCard({name: '', id_number: input.value.trim()}); }, 'small'));
  }

  async function book() {
    const items = chosenTypes().map((ty) => ty.real_name
      ? {ticket_type: ty.code, visitors: visitors.filter((v) => v.code === ty.code).map((v) => ({name: v.name, id_number: v.id_number}))}
      : {ticket_type: ty.code, persons: counts[ty.code] * ty.persons});
    purchaseKey = purchaseKey || newKey();
    try {
      order = await call('/orders', {slot: slot.id, items: items, key: purchaseKey});
      qr = await call('/orders/' + encodeURIComponent(order.order) + '/qr', {provider: state.providers[0]});
      go('pay');
      timers.push(setInterval(poll, POLL_MS));
    } catch (e) { message = e.message; render(); }
  }
  async function choose(provider) {
    try { qr = await call('/orders/' + encodeURIComponent(order.order) + '/qr', {provider: provider}); render(); }
    catch (e) { message = e.message; render(); }
  }
  async function poll() {
    try {
      const now = await call('/orders/' + encodeURIComponent(order.order));
      if (!now.paid) return;
      stopTimers();
      const answer = await call('/orders/' + encodeURIComponent(order.order) + '/print', {});
      result = {printed: await print(answer), jobs: answer.jobs.length, orders: 1, already: answer.already ? 1 : 0};
      go('done');
    } catch (e) { message = e.message; render(); }
  }
  async function pickup(card) {
    stopTimers();
    try {
      const answer = await call('/pickup', {id_number: card.id_number});
      result = {printed: await print(answer), jobs: answer.jobs.length, orders: answer.orders.length, already: answer.already};
      go('done');
    } catch (e) { message = e.message; render(); }
  }

  function header() {
    return el('header', {}, el('h1', {}, t('title') + (state ? ' · ' + state.kiosk : '')),
      button('lang', t('lang'), async () => { lang = lang === 'zh' ? 'en' : 'zh'; await load(); }, 'small'));
  }
  function render() {
    const parts = [header()];
    if (!setting('key')) {
      parts.push(el('p', {class: 'error'}, t('setup')));
    } else if (!state) {
      parts.push(el('p', {class: 'error', id: 'message'}, message));
    } else if (screen === 'home') {
      parts.push(el('div', {class: 'choices'}, button('buy', t('buy'), () => go('slots')),
        button('pickup', t('pickup'), () => go('pickup'))));
    } else if (screen === 'slots') {
      parts.push(el('h2', {}, t('slot')), el('div', {class: 'grid', id: 'slots'},
        ...state.slots.map((s) => {
          const b = button('slot-' + s.id, `${s.date.slice(5)} ${s.start}–${s.end}${s.zone ? ' · ' + s.zone : ''} · ${t('left')} ${s.left}`,
            () => { slot = s; counts = {}; go('types'); }, 'slot' + (s.left > 0 ? '' : ' full'));
          b.dataset.types = Object.keys(s.prices).join(' ');
          return b;
        })),
        button('back', t('back'), reset, 'small'));
    } else if (screen === 'types') {
      parts.push(el('h2', {}, t('types') + ' · ' + `${slot.start}–${slot.end}`),
        el('div', {id: 'types'}, ...slotTypes().map((ty) => el('div', {class: 'type'},
          el('span', {class: 'name'}, `${ty.name} ${money(ty.price)}`),
          button('minus-' + ty.code, '−', () => { counts[ty.code] = Math.max(0, (counts[ty.code] || 0) - 1); render(); }, 'step'),
          el('span', {class: 'count', id: 'count-' + ty.code}, String(counts[ty.code] || 0)),
          button('plus-' + ty.code, '+', () => { counts[ty.code] = (counts[ty.code] || 0) + 1; render(); }, 'step')))),
        el('p', {id: 'total'}, `${t('total')} ${money(total())}`),
        button('back', t('back'), () => go('slots'), 'small'));
      if (total() > 0) {
        parts.push(button('next', t('next'), () => {
          visitors = [];
          if (realNameNeeded()) go('ids'); else book();
        }));
      }
    } else if (screen === 'ids') {
      const needed = realNameNeeded();
      const onCard = (card) => {
        if (visitors.some((v) => v.id_number === card.id_number)) return;
        let remaining = chosenTypes().filter((ty) => ty.real_name).flatMap((ty) =>
          Array(counts[ty.code] - visitors.filter((v) => v.code === ty.code).length).fill(ty.code));
        visitors.push({code: remaining[0], name: card.name || '', id_number: card.id_number});
        if (visitors.length >= needed) { stopTimers(); book(); } else render();
      };
      parts.push(el('h2', {id: 'tapcard'}, t('tapcard')),
        el('p', {class: 'progress', id: 'cards'}, `${t('of')} ${visitors.length + 1} / ${needed} ${t('cards')}`),
        demoReader(onCard), button('back', t('back'), reset, 'small'));
      if (!timers.length) waitForCard(onCard);
    } else if (screen === 'pay') {
      const image = el('img', {id: 'qr', alt: 'QR', src: 'data:image/svg+xml;base64,' + btoa(qr.svg)});
      parts.push(el('h2', {}, t('scan')), el('p', {id: 'total'}, `${t('total')} ${money(order.total)}`),
        image, el('p', {id: 'waiting'}, t('waiting')));
      if (state.providers.length > 1) {
        parts.push(el('div', {class: 'providers'}, ...state.providers.map((p) =>
          button('provider-' + p, p, () => choose(p), p === qr.provider ? 'small chosen' : 'small'))));
      }
      if (qr.provider === 'simulated') {
        parts.push(el('a', {id: 'simpay', href: qr.code_url, target: '_blank', rel: 'noopener'}, t('simpay')));
      }
      parts.push(button('back', t('back'), reset, 'small'));
    } else if (screen === 'pickup') {
      parts.push(el('h2', {id: 'tapcard'}, t('tapcard')), demoReader(pickup), button('back', t('back'), reset, 'small'));
      if (!timers.length) waitForCard(pickup);
    } else if (screen === 'done') {
      const lines = [];
      if (result.jobs) lines.push(el('h2', {id: 'done'}, (order ? t('paid') + ' · ' : '') + t('take')),
        el('p', {id: 'printed'}, `${t('printed')} ${result.printed}/${result.jobs}`));
      else lines.push(el('h2', {id: 'done'}, t('none')));
      if (result.already) lines.push(el('p', {}, `${t('already')}: ${result.already}`));
      parts.push(...lines, button('home', t('home'), reset));
      timers.push(setInterval(reset, 20000));
    }
    parts.push(el('p', {class: 'error', id: 'message'}, message));
    app.replaceChildren(...parts);
  }
  async function load() {
    if (setting('key')) {
      try { state = await call('/state?lang=' + lang); } catch (e) { message = e.message; }
    }
    render();
  }
  touched();
  load();
})();
