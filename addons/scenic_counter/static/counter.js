// The ticket window's screen. Keyboard first:
//   1-9     add one ticket of the n-th type (real-name types then wait for
//           the ID card: the desk reader types the number and Enter, like
//           a keyboard wedge; or the counter PC's box reads it: GET
//           <box>/idcard, polled while an ID is awaited)
//   Enter   with the ID field empty: go to payment; in payment: pay
//           (cash tendered empty = exact amount)
//   ↑ ↓     choose the time slot      F2 X report   F4 close the shift
//   F8      open the drawer           F9 pickup (ID card, or reference
//   F6      a wallet's statement         + phone)                Esc  clear
//           (supervisors)            F7 refund an order (by its method;
//                                       a supervisor may approve one
//                                       past the refund period or used)
// One adult ticket: 1, [ID read], Enter, Enter = 3 keystrokes + the read.
'use strict';
(function () {
  const db = document.body.dataset.db;
  const api = '/' + db + '/scenic/counter/v1';
  const T = {
    zh: {login: '登录', user: '用户名', password: '密码', open: '开班',
      window: '窗口', float: '备用金', slots: '时段', left: '余',
      types: '票种', cart: '本单', total: '合计', pay: '收款',
      tendered: '实收', change: '找零', idcard: '请刷身份证',
      sold: '已售', receipt: '小票', printed: '已打印', close: '交班',
      counted: '清点', expected: '应有', difference: '差额',
      statement: '下载对账单', date: '日期', provider: '支付机构', pickup: '取票', refund: '退款', approve: '主管批准（超出退款期限或门票已使用）', refunded: '已退款', reference: '订单号', phone: '手机号', picked: '已取订单', empty: '空', lang: 'English', method: '付款方式',
      trade: '交易号', noslot: '没有同时出售这些票种的时段', paycode: '扫付款码', pending: '待主管审批', closed: '已交班',
      keys: '1-9 选票种 · Enter 收款 · F2 X报表 · F4 交班 · F6 对账单 · F7 退款 · F8 钱箱 · F9 取票 · Esc 清空'},
    en: {login: 'Log in', user: 'User', password: 'Password',
      open: 'Open shift', window: 'Window', float: 'Float',
      slots: 'Time slots', left: 'left', types: 'Ticket types',
      cart: 'This sale', total: 'Total', pay: 'Pay', tendered: 'Tendered',
      change: 'Change', idcard: 'Read the ID card', sold: 'Sold',
      receipt: 'Receipt', printed: 'Printed', close: 'Close shift',
      counted: 'Counted', expected: 'Expected', difference: 'Difference',
      statement: 'Download statement', date: 'Date', provider: 'Wallet', pickup: 'Pickup', refund: 'Refund', approve: 'Supervisor approves (past the refund period or tickets used)', refunded: 'Refunded', reference: 'Order reference', phone: 'Phone', picked: 'Orders picked up', empty: 'empty', lang: '中文', method: 'Method',
      trade: 'Trade number', noslot: 'No time slot sells all these ticket types', paycode: 'Scan payment code', pending: 'Awaiting supervisor',
      closed: 'Shift closed',
      keys: '1-9 type · Enter pay · F2 X report · F4 close · F6 statement · F7 refund · F8 drawer · F9 pickup · Esc clear'},
  };
  let lang = localStorage.getItem('scenic.counter.lang') || 'zh';
  let auth = sessionStorage.getItem('scenic.counter.auth');
  let state = null, slotIndex = 0, cart = [], mode = 'sell', methodIndex = 0;
  let last = null, picked = null, message = '', saleKey = newKey();
  const app = document.getElementById('app');
  const t = (k) => T[lang][k];

  function newKey() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'on') for (const [e, f] of Object.entries(v)) node.addEventListener(e, f);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  async function call(path, body) {
    const response = await fetch(api + path, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {'Authorization': 'Session ' + auth,
        'Content-Type': 'application/json'},
      body: body === undefined ? undefined : JSON.stringify(body)});
    const data = await response.json();
    if (response.status === 401) { auth = null; sessionStorage.removeItem('scenic.counter.auth'); }
    if (!response.ok) throw new Error(data.error ? data.error.message : response.status);
    return data;
  }
  async function login(user, password) {
    const response = await fetch('/' + db + '/rpc/', {method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({method: 'common.db.login', id: 1,
        params: [user, {password: password}, lang === 'zh' ? 'zh_CN' : 'en']})});
    const data = await response.json();
    if (!data.result) throw new Error((data.error && data.error[0]) || 'login');
    const raw = new TextEncoder().encode(user + ':' + data.result[0] + ':' + data.result[1]);
    auth = btoa(String.fromCharCode(...raw));
    sessionStorage.setItem('scenic.counter.auth', auth);
  }
  async function refresh() {
    try { state = await call('/state'); } catch (e) { message = e.message; }
    render();
  }
  // The counter PC's IoT box (its local API; the page's origin is in the
  // box's api.allowed_origins): its address is the window's box in the
  // device registry (state.shift.box), else scenic.counter.box in local
  // storage; scenic.counter.boxtoken = its api.token, set once there.
  function boxUrl() {
    return (state && state.shift && state.shift.box) || localStorage.getItem('scenic.counter.box');
  }
  function boxHeaders() {
    return {'Authorization': 'Bearer ' + (localStorage.getItem('scenic.counter.boxtoken') || ''),
      'Content-Type': 'application/json'};
  }
  async function print(jobs) {
    // The counter PC's IoT box prints; without one the tickets are listed.
    const box = boxUrl();
    if (!box || !jobs.length) return jobs.length;
    const response = await fetch(box + '/print', {method: 'POST',
      headers: boxHeaders(), body: JSON.stringify({jobs: jobs})});
    return response.ok ? (await response.json()).printed : 0;
  }
  // The desk ID reader through the box: polled while an ID is awaited; a
  // card is taken once per presentation (the keyboard wedge still works).
  let cardOnReader = null;
  setInterval(async () => {
    const box = boxUrl();
    if (!box || !state || !state.shift || !(needsId() || mode === 'pickup')) return;
    try {
      const response = await fetch(box + '/idcard', {headers: boxHeaders()});
      const read = await response.json();
      const number = read.card ? read.card.id_number : null;
      if (number && number !== cardOnReader) {
        if (mode === 'pickup') {
          const field = document.getElementById('pickup-id');
          if (field) { field.value = number; field.form.requestSubmit(); }
        } else {
          readId(number, read.card.name);
        }
      }
      cardOnReader = number;
    } catch (e) { /* the box is down: the keyboard wedge remains */ }
  }, 500);
  // A slot sells the types that admit to its zone, at its own prices.
  const sells = (slot, code) => !!slot && slot.prices[code] !== undefined;
  function priceOf(type) {
    const slot = state.slots[slotIndex];
    return sells(slot, type.code) ? slot.prices[type.code] : type.price;
  }
  // The chosen slot, or the nearest one in `step`'s direction (the first
  // from the top without one) that sells every type of the cart and `code`.
  function slotFor(codes, from, step) {
    const fits = (i) => codes.every((c) => sells(state.slots[i], c));
    if (!step && fits(from)) return from;
    for (let i = step ? from + step : 0; i >= 0 && i < state.slots.length; i += step || 1) {
      if (fits(i)) return i;
    }
    return -1;
  }
  function moveSlot(step) {
    const i = slotFor(cart.map((l) => l.type.code), slotIndex, step);
    if (i >= 0) { slotIndex = i; render(); }
  }
  function total() {
    return cart.reduce((s, line) => s + Number(priceOf(line.type)) * Math.max(line.visitors.length, line.type.real_name ? 0 : 1), 0);
  }
  function needsId() {
    return cart.some((line) => line.type.real_name && line.visitors.length < line.count);
  }
  function addType(index) {
    const type = state.types[index];
    if (!type) return;
    const i = slotFor([...cart.map((l) => l.type.code), type.code], slotIndex, 0);
    if (i < 0) { message = t('noslot'); render(); return; }
    slotIndex = i; message = '';
    let line = cart.find((l) => l.type.code === type.code);
    if (!line) { line = {type: type, count: 0, visitors: []}; cart.push(line); }
    line.count += 1;
    if (!type.real_name) line.visitors.push(null);
    mode = 'sell'; render();
  }
  function readId(number, name) {
    const line = cart.find((l) => l.type.real_name && l.visitors.length < l.count);
    if (!line) return;
    line.visitors.push({name: name || '', id_number: number.trim()});
    render();
  }
  async function pay(tendered, trade, paycode) {
    const method = state.methods[methodIndex];
    const items = cart.map((line) => line.type.real_name
      ? {ticket_type: line.type.code, visitors: line.visitors}
      : {ticket_type: line.type.code, persons: line.count * line.type.persons});
    try {
      const sale = await call('/sell', {slot: state.slots[slotIndex].id,
        items: items, method: method.id, tendered: tendered || null,
        trade_number: trade || null, payment_code: paycode || undefined,
        key: saleKey});
      // Printed by the window's printer (the demo's simulated one) or
      // sent to the counter PC's box.
      if (!sale.printed) sale.printed = await print(sale.jobs);
      last = sale; cart = []; mode = 'sell'; saleKey = newKey(); message = '';
      state = await call('/state');
      slotIndex = Math.min(slotIndex, Math.max(state.slots.length - 1, 0));
    } catch (e) { message = e.message; }
    render();
  }
  function money(v) { return '¥' + Number(v).toFixed(2); }

  function renderLogin() {
    const user = el('input', {id: 'login', autocomplete: 'username'});
    const password = el('input', {id: 'password', type: 'password', autocomplete: 'current-password'});
    const form = el('form', {id: 'login-form', on: {submit: async (e) => {
      e.preventDefault();
      try { await login(user.value, password.value); await refresh(); }
      catch (err) { message = err.message; render(); }
    }}}, el('label', {}, t('user'), user), el('label', {}, t('password'), password),
      el('button', {type: 'submit'}, t('login')));
    app.replaceChildren(el('h1', {}, '售票窗口 · Ticket window'), form, el('p', {class: 'error'}, message));
    user.focus();
  }
  function renderOpen() {
    const point = el('select', {id: 'point'}, ...state.points.map((p) => el('option', {value: p.id}, p.name)));
    const amount = el('input', {id: 'float', inputmode: 'decimal', value: '0'});
    const form = el('form', {id: 'open-form', on: {submit: async (e) => {
      e.preventDefault();
      try { await call('/shift', {point: Number(point.value), float: amount.value}); await refresh(); }
      catch (err) { message = err.message; render(); }
    }}}, el('label', {}, t('window'), point), el('label', {}, t('float'), amount),
      el('button', {type: 'submit'}, t('open')));
    app.replaceChildren(el('h1', {}, state.user), form, el('p', {class: 'error'}, message));
    amount.focus(); amount.select();
  }
  function renderSell() {
    const shift = state.shift;
    const slots = el('ol', {id: 'slots'}, ...state.slots.map((s, i) => el('li',
      {class: i === slotIndex ? "chosen" : ""}, `${s.date.slice(5)} ${s.start}–${s.end}${s.zone ? ' ' + s.zone : ''} ${t("left")} ${s.left}`)));
    const types = el('ol', {id: 'types'}, ...state.types.map((ty, i) => el('li',
      {class: sells(state.slots[slotIndex], ty.code) ? '' : 'unsold'},
      el('kbd', {}, String(i + 1)), ` ${ty.name} ${money(priceOf(ty))}`)));
    const lines = el('ul', {id: 'cart'}, ...cart.map((line) => el('li', {},
      `${line.type.name} × ${line.count}`,
      ...line.visitors.filter((v) => v).map((v) => el('span', {class: 'id'}, ' ' + v.id_number.slice(0, 6) + '********' + v.id_number.slice(-4))))));
    const parts = [el('header', {}, `${shift.point_name} · ${state.user}`,
      el('button', {id: 'lang', type: 'button', on: {click: () => {
        lang = lang === 'zh' ? 'en' : 'zh'; localStorage.setItem('scenic.counter.lang', lang); render(); }}}, t('lang'))),
      el('section', {}, el('h2', {}, t('slots')), slots),
      el('section', {}, el('h2', {}, t('types')), types),
      el('section', {}, el('h2', {}, t('cart')), lines, el('p', {id: 'total'}, `${t('total')} ${money(total())}`))];
    let focus = null;
    if (mode === 'pay') {
      const method = state.methods[methodIndex];
      const tendered = el('input', {id: 'tendered', inputmode: 'decimal'});
      const trade = el('input', {id: 'trade'});
      // The handheld scanner types the visitor's payment code and Enter.
      const paycode = el('input', {id: 'paycode', inputmode: 'numeric', autocomplete: 'off'});
      const wallet = method.provider === 'wechat' || method.provider === 'alipay';
      const form = el('form', {id: 'pay-form', on: {submit: (e) => {
        e.preventDefault(); pay(tendered.value, trade.value, wallet ? paycode.value.trim() : null); }}},
        el('p', {}, t('method') + ': ', ...state.methods.map((m, i) => el('button', {type: 'button',
          class: i === methodIndex ? 'chosen' : '', on: {click: () => { methodIndex = i; render(); }}}, m.name))),
        method.provider === 'cash' ? el('label', {}, t('tendered'), tendered) : null,
        method.provider === 'unionpay' ? el('label', {}, t('trade'), trade) : null,
        wallet ? el('label', {}, t('paycode'), paycode) : null,
        el('button', {type: 'submit', id: 'pay'}, t('pay')));
      parts.push(form);
      focus = method.provider === 'unionpay' ? trade : wallet ? paycode : tendered;
      if (method.provider === 'simulated') focus = form.querySelector('#pay');
    } else if (mode === 'pickup') {
      // F9: the ID card on the desk reader, or the reference and phone.
      const id = el('input', {id: 'pickup-id', autocomplete: 'off'});
      const reference = el('input', {id: 'pickup-ref', autocomplete: 'off'});
      const phone = el('input', {id: 'pickup-phone', inputmode: 'tel', autocomplete: 'off'});
      parts.push(el('form', {id: 'pickup-form', on: {submit: async (e) => {
        e.preventDefault();
        const body = id.value.trim() ? {id_number: id.value.trim()}
          : {reference: reference.value.trim(), phone: phone.value.trim()};
        try {
          const r = await call('/pickup', body);
          if (!r.printed) r.printed = await print(r.jobs);
          picked = r; mode = 'sell'; message = '';
        } catch (err) { message = err.message; }
        render();
      }}}, el('h2', {}, t('pickup')), el('label', {}, t('idcard'), id),
        el('label', {}, t('reference'), reference), el('label', {}, t('phone'), phone),
        el('button', {type: 'submit', id: 'pickup-go'}, t('pickup'))));
      focus = id;
    } else if (mode === 'refund') {
      // F7: an order refunded by its original method and trade number.
      const reference = el('input', {id: 'refund-ref', autocomplete: 'off'});
      const approve = el('input', {id: 'refund-approve', type: 'checkbox'});
      parts.push(el('form', {id: 'refund-form', on: {submit: async (e) => {
        e.preventDefault();
        try {
          const r = await call('/refund', {order: reference.value.trim(), approve: approve.checked});
          state.shift = r.shift; mode = 'sell';
          message = t('refunded') + ' ' + r.order + ': ' + r.refunds.map((x) => x.method + ' ¥' + x.amount).join(', ');
        } catch (err) { message = err.message; }
        render();
      }}}, el('h2', {}, t('refund')), el('label', {}, t('reference'), reference),
        el('label', {}, approve, t('approve')),
        el('button', {type: 'submit', id: 'refund-go'}, t('refund'))));
      focus = reference;
    } else if (mode === 'statement') {
      // F6 (supervisors): a wallet's settlement file for a past day.
      const provider = el('select', {id: 'statement-provider'}, el('option', {value: 'wechat'}, 'WeChat Pay'),
        el('option', {value: 'alipay'}, 'Alipay'));
      const yesterday = new Date(Date.now() - 86400000).toISOString().slice(0, 10);
      const date = el('input', {id: 'statement-date', type: 'date', value: yesterday});
      parts.push(el('form', {id: 'statement-form', on: {submit: async (e) => {
        e.preventDefault();
        const response = await fetch(api + '/statement?provider=' + provider.value + '&date=' + date.value,
          {headers: {'Authorization': 'Session ' + auth}});
        if (!response.ok) { message = (await response.json()).error.message; render(); return; }
        const link = el('a', {href: URL.createObjectURL(await response.blob()),
          download: `${provider.value}-${date.value}.${provider.value === 'alipay' ? 'zip' : 'csv'}`});
        link.click(); mode = 'sell'; message = ''; render();
      }}}, el('h2', {}, t('statement')), el('label', {}, t('provider'), provider),
        el('label', {}, t('date'), date), el('button', {type: 'submit'}, t('statement'))));
      focus = date;
    } else if (mode === 'close') {
      const inputs = ['100', '50', '20', '10', '5', '1', '0.5', '0.1'].map((d) =>
        el('input', {'data-d': d, inputmode: 'numeric', size: '4'}));
      parts.push(el('form', {id: 'close-form', on: {submit: async (e) => {
        e.preventDefault();
        const counts = {};
        inputs.forEach((i) => { if (i.value) counts[i.dataset.d] = Number(i.value); });
        try {
          const r = await call('/close', {counts: counts});
          await print([r.report]);
          app.replaceChildren(el('h1', {}, r.state === 'closed' ? t('closed') : t('pending')),
            el('p', {id: 'close-result'}, `${t('expected')} ${money(r.expected)} · ${t('counted')} ${money(r.counted)} · ${t('difference')} ${money(r.difference)}`));
        } catch (err) { message = err.message; render(); }
      }}}, ...inputs.map((i) => el('label', {}, '¥' + i.dataset.d, i)), el('button', {type: 'submit'}, t('close'))));
      focus = inputs[0];
    } else {
      const id = el('input', {id: 'idcard', autocomplete: 'off', placeholder: needsId() ? t('idcard') : ''});
      id.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          e.preventDefault(); e.stopPropagation();
          if (id.value.trim()) { readId(id.value); }
          else if (cart.length && !needsId()) { mode = 'pay'; render(); }
        } else if (/^[1-9]$/.test(e.key) && !needsId() && !id.value) {
          e.preventDefault(); addType(Number(e.key) - 1);
        }
      });
      parts.push(el('label', {class: 'idcard'}, t('idcard'), id));
      focus = id;
    }
    if (last) {
      parts.push(el('section', {id: 'last'}, `${t('sold')} ${last.tickets} · ${t('receipt')} ${last.receipt} · ${t('total')} ${money(last.total)}`,
        last.change != null ? el('strong', {id: 'change'}, ` ${t('change')} ${money(last.change)}`) : null,
        ` · ${t('printed')} ${last.printed}/${last.jobs.length}`));
    }
    if (picked) {
      parts.push(el('section', {id: 'picked'}, `${t('picked')} ${picked.orders.length} · ${t('printed')} ${picked.printed}/${picked.jobs.length}`));
    }
    parts.push(el('p', {class: 'error', id: 'message'}, message), el('footer', {}, t('keys')));
    app.replaceChildren(...parts);
    if (focus) focus.focus();
  }
  function render() {
    if (!auth) return renderLogin();
    if (!state) return;
    if (!state.shift) return renderOpen();
    renderSell();
  }
  document.addEventListener('keydown', async (e) => {
    if (!state || !state.shift) return;
    if (e.key === 'Escape') { cart = []; mode = 'sell'; message = ''; render(); }
    else if (e.key === 'ArrowUp' && mode === 'sell') { moveSlot(-1); }
    else if (e.key === 'ArrowDown' && mode === 'sell') { moveSlot(1); }
    else if (e.key === 'F2') { e.preventDefault(); try { await print([await call('/report')]); } catch (err) { message = err.message; render(); } }
    else if (e.key === 'F4') { e.preventDefault(); mode = 'close'; render(); }
    else if (e.key === 'F6') { e.preventDefault(); mode = 'statement'; render(); }
    else if (e.key === 'F7') { e.preventDefault(); mode = 'refund'; render(); }
    else if (e.key === 'F9') { e.preventDefault(); mode = 'pickup'; picked = null; render(); }
    else if (e.key === 'F8') { e.preventDefault(); try { await call('/drawer', {}); } catch (err) { message = err.message; render(); } }
    else if (mode === 'pay' && (e.key === 'ArrowLeft' || e.key === 'ArrowRight')) {
      methodIndex = (methodIndex + (e.key === 'ArrowRight' ? 1 : state.methods.length - 1)) % state.methods.length; render(); }
  });
  if (auth) refresh(); else render();
})();
