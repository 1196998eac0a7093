/* Scenic public booking page and pickup page.
 *
 * Plain modern JavaScript, no build step, no dependency. The page talks to
 * the booking API (/<db>/scenic/v1) with the publishable key of the channel
 * flagged for the booking page; the server embeds both in #scenic-config.
 *
 * Everything shown comes from the state below through render(); data is
 * always inserted with textContent (never innerHTML).
 */
'use strict';

(() => {
  const CONFIG = JSON.parse(
    document.getElementById('scenic-config').textContent);

  // --- strings ------------------------------------------------------------
  const I18N = {
    zh: {
      html_lang: 'zh-CN',
      switch_to: 'English',
      switch_to_lang: 'en',
      switch_label: 'Switch to English',
      nav: '页面导航',
      nav_book: '预约门票',
      nav_pickup: '取票',
      book_title: '门票预约',
      book_intro: '实名分时预约：选择日期和入园时段，为每位游客填写证件信息。',
      step_date: '选择日期',
      today: '今天',
      tomorrow: '明天',
      step_slot: '选择入园时段',
      choose_date_first: '请先选择日期。',
      slots_loading: '正在查询余票…',
      no_slots: '当天没有可预约的时段。',
      places_left: '余 {n}',
      slot_sold_out: '已约满',
      slot_closed: '已结束',
      day_over: '当天的入园时段已全部结束，请选择其他日期。',
      from_price: '{price} 起',
      whole_area: '景区入园',
      step_tickets: '选择票种和游客',
      choose_slot_first: '请先选择入园时段。',
      real_name_tag: '实名',
      persons_tag: '每张 {n} 人',
      qty_label: '{name}数量',
      persons_label: '{name}人数',
      qty_dec: '减少 {name}',
      qty_inc: '增加 {name}',
      persons_unit: '{n} 人',
      visitor_legend: '游客 {n} · {type}',
      name: '姓名',
      id_type: '证件类型',
      id_number: '证件号码',
      resident_id: '居民身份证',
      passport: '护照',
      hk_macau_permit: '港澳居民来往内地通行证',
      taiwan_permit: '台湾居民来往大陆通行证',
      step_contact: '联系人',
      contact_name: '联系人姓名',
      contact_phone: '手机号码',
      phone_hint: '取票、查询订单时需要。',
      total: '合计',
      book: '提交预订',
      booking: '正在提交…',
      no_tickets: '请至少选择一张门票。',
      fix_errors: '请修改标出的内容。',
      retry_hint: '网络中断，订单可能未提交。请再次点击“提交预订”（不会重复下单）。',
      v_name: '请填写姓名。',
      v_id_empty: '请填写证件号码。',
      v_ref_empty: '请填写订单号（预订成功时显示）。',
      v_id_length: '身份证号码应为 18 位。',
      v_id_format: '身份证号码为 17 位数字加 1 位数字或 X。',
      v_id_area: '身份证号码的地区码无效。',
      v_id_birth: '身份证号码中的出生日期无效。',
      v_id_checksum: '身份证号码校验位不正确，请检查是否输错。',
      v_passport: '护照号码为 5–17 位字母或数字。',
      v_hk_macau: '港澳通行证号码为 H 或 M 加 8 位或 10 位数字。',
      v_taiwan: '台湾通行证号码为 8 位或 10 位数字。',
      v_contact_name: '请填写联系人姓名。',
      v_phone: '请填写有效的手机号码。',
      v_persons: '人数须为 {n} 的倍数。',
      order_title: '您的订单',
      order_ref: '订单号',
      visit: '入园时间',
      contact: '联系人',
      state_reserved: '待支付',
      state_paid: '已支付',
      state_partly_used: '部分已使用',
      state_used: '已使用',
      state_done: '已完成',
      state_cancelled: '已取消',
      state_refunded: '已退款',
      state_expired: '已过期',
      hold_left: '请在 {time} 内完成支付，超时后名额将自动释放。',
      hold_expired: '支付时间已过，名额已释放，请重新预订。',
      pay: '支付（模拟）{amount}',
      paying: '正在支付…',
      cancel_hold: '取消订单',
      cancel_refund: '取消 / 退款',
      confirm_refund: '确定取消订单并退款 {amount}？门票将立即作废。',
      confirm_cancel: '确定取消这个订单？',
      confirm_yes: '确定取消',
      confirm_no: '不取消',
      working: '请稍候…',
      cancelled_note: '订单已取消。',
      refunded_note: '订单已取消，{amount} 已原路退回。',
      tickets_title: '电子门票',
      ticket_of: '第 {n}/{total} 张',
      holder: '证件',
      persons: '人数',
      valid: '有效时间',
      entries: '可入园次数',
      entries_unlimited: '不限',
      qr_alt: '{type}门票二维码',
      ticket_state_valid: '有效',
      ticket_state_used: '已使用',
      ticket_state_reserved: '待支付',
      ticket_state_cancelled: '已取消',
      ticket_state_revoked: '已作废',
      ticket_state_expired: '已过期',
      gate_hint: '入园时请出示二维码或刷身份证。之后可在“取票”页面用证件号码和手机号再次查看门票。',
      book_again: '再订一单',
      pickup_title: '取票 / 查询订单',
      pickup_intro: '输入预订时任一游客的证件号码、联系人手机号和订单号。',
      pickup_id: '游客证件号码',
      pickup_ref: '订单号',
      search: '查询',
      searching: '正在查询…',
      no_orders: '没有找到订单。请核对证件号码、手机号和订单号。',
      orders_found: '找到 {n} 个订单。',
      simulated_note: '演示环境：支付为模拟支付，不会扣款。',
      err_sold_out: '该时段余票不足，请选择其他时段。',
      err_id_limit: '该证件当天的购票数量已达上限。',
      err_daily_limit: '当天入园人数已达上限，请选择其他日期。',
      err_invalid_id_number: '证件号码无效，请检查。',
      err_invalid_request: '请检查填写的内容。',
      err_amount_mismatch: '支付金额与订单金额不符，请刷新后重试。',
      err_not_payable: '该订单已无法支付（可能已超时）。',
      err_not_cancellable: '该订单已无法取消或退款。',
      err_hold_limit: '未支付的预订过多，请先支付或取消已有订单，或稍后再试。',
      err_unauthorized: '预约服务暂不可用（渠道密钥无效），请联系景区。',
      err_not_found: '没有找到该订单。',
      err_idempotency_conflict: '这次提交与之前的不一致，请重新提交。',
      err_payment_failed: '支付失败，请重试。',
      err_internal_error: '服务器出错，订单未作任何更改。请稍后再试。',
      err_method_not_allowed: '页面与服务器版本不符，请刷新页面后重试。',
      err_too_many_requests: '查询次数过多，请稍后再试，或到售票处咨询。',
      err_payload_too_large: '提交的内容过多，请减少游客人数。',
      err_unavailable: '服务器正在切换，请几秒后再提交一次：同一订单不会重复。',
      err_network: '网络连接失败，请检查网络后重试。',
      err_unknown: '出错了：{message}',
    },
    en: {
      html_lang: 'en',
      switch_to: '中文',
      switch_to_lang: 'zh-CN',
      switch_label: '切换到中文',
      nav: 'Pages',
      nav_book: 'Book',
      nav_pickup: 'My tickets',
      book_title: 'Book tickets',
      book_intro: 'Real-name timed entry: choose a day and an entry time, ' +
        'then give each visitor’s ID.',
      step_date: 'Choose a date',
      today: 'Today',
      tomorrow: 'Tomorrow',
      step_slot: 'Choose an entry time',
      choose_date_first: 'Choose a date first.',
      slots_loading: 'Checking availability…',
      no_slots: 'No entry times on this day.',
      places_left: '{n} left',
      slot_sold_out: 'Sold out',
      slot_closed: 'Closed',
      day_over: 'All entry times of this day are over; choose another day.',
      from_price: 'from {price}',
      whole_area: 'Park entry',
      step_tickets: 'Tickets and visitors',
      choose_slot_first: 'Choose an entry time first.',
      real_name_tag: 'Real-name',
      persons_tag: '{n} persons per ticket',
      qty_label: 'Number of {name} tickets',
      persons_label: 'Persons for {name}',
      qty_dec: 'One {name} ticket less',
      qty_inc: 'One {name} ticket more',
      persons_unit: '{n} persons',
      visitor_legend: 'Visitor {n} · {type}',
      name: 'Full name',
      id_type: 'ID type',
      id_number: 'ID number',
      resident_id: 'Resident ID card',
      passport: 'Passport',
      hk_macau_permit: 'Hong Kong/Macao travel permit',
      taiwan_permit: 'Taiwan travel permit',
      step_contact: 'Contact',
      contact_name: 'Contact name',
      contact_phone: 'Mobile phone',
      phone_hint: 'Needed to find your tickets and orders later.',
      total: 'Total',
      book: 'Book',
      booking: 'Booking…',
      no_tickets: 'Choose at least one ticket.',
      fix_errors: 'Please correct the highlighted fields.',
      retry_hint: 'The connection dropped: the booking may not have been ' +
        'sent. Press “Book” again (it will not book twice).',
      v_name: 'Enter the name.',
      v_id_empty: 'Enter the ID number.',
      v_ref_empty: 'Enter the order reference (shown when you booked).',
      v_id_length: 'A resident ID number has 18 characters.',
      v_id_format: 'A resident ID number is 17 digits and a digit or X.',
      v_id_area: 'The area code of this resident ID number is not valid.',
      v_id_birth: 'The birth date in this resident ID number is not valid.',
      v_id_checksum: 'The check character of this ID number is wrong; ' +
        'please check for a typo.',
      v_passport: 'A passport number has 5 to 17 letters or digits.',
      v_hk_macau: 'A Hong Kong/Macao permit number is H or M and 8 or 10 ' +
        'digits.',
      v_taiwan: 'A Taiwan permit number has 8 or 10 digits.',
      v_contact_name: 'Enter the contact name.',
      v_phone: 'Enter a valid mobile phone number.',
      v_persons: 'The number of persons must be a multiple of {n}.',
      order_title: 'Your order',
      order_ref: 'Order number',
      visit: 'Entry time',
      contact: 'Contact',
      state_reserved: 'Awaiting payment',
      state_paid: 'Paid',
      state_partly_used: 'Partly used',
      state_used: 'Used',
      state_done: 'Done',
      state_cancelled: 'Cancelled',
      state_refunded: 'Refunded',
      state_expired: 'Expired',
      hold_left: 'Pay within {time}; after that the places are released.',
      hold_expired: 'The time to pay is over and the places were ' +
        'released. Please book again.',
      pay: 'Pay (simulated) {amount}',
      paying: 'Paying…',
      cancel_hold: 'Cancel booking',
      cancel_refund: 'Cancel / refund',
      confirm_refund: 'Cancel this order and refund {amount}? The tickets ' +
        'stop working at once.',
      confirm_cancel: 'Cancel this booking?',
      confirm_yes: 'Yes, cancel',
      confirm_no: 'Keep it',
      working: 'Please wait…',
      cancelled_note: 'The order is cancelled.',
      refunded_note: 'The order is cancelled and {amount} was refunded.',
      tickets_title: 'Your tickets',
      ticket_of: 'Ticket {n} of {total}',
      holder: 'ID',
      persons: 'Persons',
      valid: 'Valid',
      entries: 'Entries',
      entries_unlimited: 'Unlimited',
      qr_alt: 'QR code of the {type} ticket',
      ticket_state_valid: 'Valid',
      ticket_state_used: 'Used',
      ticket_state_reserved: 'Unpaid',
      ticket_state_cancelled: 'Cancelled',
      ticket_state_revoked: 'Revoked',
      ticket_state_expired: 'Expired',
      gate_hint: 'Show the QR code or your ID card at the gate. You can ' +
        'find these tickets again under “My tickets” with an ID number ' +
        'and the phone.',
      book_again: 'Book again',
      pickup_title: 'Find my tickets',
      pickup_intro: 'Enter the ID number of one of the visitors, the ' +
        'contact phone and the order reference of the booking.',
      pickup_id: 'Visitor’s ID number',
      pickup_ref: 'Order reference',
      search: 'Find',
      searching: 'Searching…',
      no_orders: 'No orders found. Check the ID number, the phone and ' +
        'the order reference.',
      orders_found: '{n} order(s) found.',
      simulated_note: 'Demo: payments are simulated, no money is charged.',
      err_sold_out: 'Not enough places are left at this time; choose ' +
        'another one.',
      err_id_limit: 'This ID already holds the most tickets allowed for ' +
        'that day.',
      err_daily_limit: 'The day is fully booked; choose another day.',
      err_invalid_id_number: 'This ID number is not valid.',
      err_invalid_request: 'Please check this entry.',
      err_amount_mismatch: 'The amount does not match the order total; ' +
        'reload and try again.',
      err_not_payable: 'This order can no longer be paid (the time to pay ' +
        'may be over).',
      err_not_cancellable: 'This order can no longer be cancelled or ' +
        'refunded.',
      err_hold_limit: 'Too many unpaid bookings: pay or cancel one first, ' +
        'or try again later.',
      err_unauthorized: 'Booking is unavailable (the channel key was ' +
        'refused); please contact the scenic area.',
      err_not_found: 'No such order.',
      err_idempotency_conflict: 'This submission differs from the ' +
        'previous one; please submit again.',
      err_payment_failed: 'The payment failed; please try again.',
      err_internal_error: 'The server failed; nothing was changed. Please ' +
        'try again later.',
      err_method_not_allowed: 'This page does not match the server; ' +
        'reload it and try again.',
      err_too_many_requests: 'Too many look-ups: try again later, or ask ' +
        'at the ticket office.',
      err_payload_too_large: 'Too much at once: book fewer visitors.',
      err_unavailable: 'The server is switching over: submit again in a ' +
        'few seconds (the same booking is never made twice).',
      err_network: 'Network error: check your connection and try again.',
      err_unknown: 'Something went wrong: {message}',
    },
  };
  const ID_TYPES = ['resident_id', 'passport', 'hk_macau_permit',
    'taiwan_permit'];
  const LANG_KEY = 'scenic.lang';
  const PHONE_RE = /^\+?[0-9][0-9 -]{4,19}$/;

  function initialLang() {
    const param = new URLSearchParams(location.search).get('lang');
    let stored = null;
    try { stored = localStorage.getItem(LANG_KEY); } catch (e) { /* off */ }
    const wanted = param || stored ||
      (navigator.languages && navigator.languages[0]) ||
      navigator.language || '';
    return wanted.toLowerCase().startsWith('zh') ? 'zh' : 'en';
  }

  function t(key, params) {
    const table = I18N[state.lang];
    let text = key in table ? table[key] : (I18N.en[key] ?? key);
    for (const [name, value] of Object.entries(params || {})) {
      text = text.split(`{${name}}`).join(String(value));
    }
    return text;
  }

  // --- DOM helper: text only, never HTML ---------------------------------
  const PROPS = new Set(['value', 'checked', 'disabled', 'selected',
    'hidden', 'tabIndex']);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (PROPS.has(key)) el[key] = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  // --- formatting ---------------------------------------------------------
  function money(amount, currency) {
    if (currency === 'CNY') return `¥${amount}`;
    return `${amount} ${currency || ''}`.trim();
  }

  // API times are ISO 8601 in the area's timezone: keep their local part.
  const localDate = (iso) => iso ? iso.slice(0, 10) : '';
  const localTime = (iso) => iso ? iso.slice(11, 16) : '';

  function addDays(isoDate, days) {
    const [y, m, d] = isoDate.split('-').map(Number);
    return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
  }

  function dayParts(isoDate) {
    const [y, m, d] = isoDate.split('-').map(Number);
    const date = new Date(Date.UTC(y, m - 1, d));
    const locale = state.lang === 'zh' ? 'zh-CN' : 'en-GB';
    const format = (options) => new Intl.DateTimeFormat(locale,
      Object.assign({timeZone: 'UTC'}, options)).format(date);
    let top = format({weekday: 'short'});
    let relative = null;
    if (isoDate === CONFIG.today) relative = t('today');
    else if (isoDate === addDays(CONFIG.today, 1)) relative = t('tomorrow');
    // "Tomorrow" is too long for a phone's chip: English keeps the weekday.
    if (relative && (state.lang === 'zh' || isoDate === CONFIG.today)) {
      top = relative;
    }
    return {
      top,
      day: String(d),
      month: state.lang === 'zh' ? `${m}月` : format({month: 'short'}),
      full: (relative ? `${relative}, ` : '') + format({weekday: 'long',
        year: 'numeric', month: 'long', day: 'numeric'}),
    };
  }

  function windowText(start, end) {
    if (!start) return '';
    if (localDate(start) === localDate(end)) {
      return `${localDate(start)} ${localTime(start)}–${localTime(end)}`;
    }
    return `${localDate(start)} ${localTime(start)} – ` +
      `${localDate(end)} ${localTime(end)}`;
  }

  function typeName(code, fallback) {
    const names = (CONFIG.names && CONFIG.names.ticket_types || {})[code];
    return (names && names[state.lang]) || fallback || code;
  }

  function zoneName(code) {
    const names = (CONFIG.names && CONFIG.names.zones || {})[code];
    return (names && names[state.lang]) || code;
  }

  // --- ID numbers (GB 11643-1999), as scenic_common.idnumber -------------
  const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const CHECK_CHARS = '10X98765432';

  function normalizeId(number) {
    // Full-width forms (１２３Ｘ) from Chinese input methods, spaces.
    return number.replace(/[\uFF01-\uFF5E]/g,
      (c) => String.fromCharCode(c.charCodeAt(0) - 0xFEE0))
      .replace(/\s+/g, '').toUpperCase();
  }

  function residentIdProblem(number) {
    if (number.length !== 18) return 'v_id_length';
    if (!/^[0-9]{17}[0-9X]$/.test(number)) return 'v_id_format';
    if ('09'.includes(number[0])) return 'v_id_area';
    const y = +number.slice(6, 10), m = +number.slice(10, 12),
      d = +number.slice(12, 14);
    const birth = new Date(Date.UTC(y, m - 1, d));
    if (birth.getUTCFullYear() !== y || birth.getUTCMonth() !== m - 1 ||
        birth.getUTCDate() !== d || y < 1900 ||
        number.slice(6, 14) > CONFIG.today.replaceAll('-', '')) {
      return 'v_id_birth';
    }
    let sum = 0;
    for (let i = 0; i < 17; i++) sum += (+number[i]) * WEIGHTS[i];
    if (CHECK_CHARS[sum % 11] !== number[17]) return 'v_id_checksum';
    return null;
  }

  function idProblem(idType, raw) {
    const number = normalizeId(raw || '');
    if (!number) return 'v_id_empty';
    switch (idType) {
      case 'resident_id': return residentIdProblem(number);
      case 'passport':
        return /^[A-Z0-9]{5,17}$/.test(number) ? null : 'v_passport';
      case 'hk_macau_permit':
        return /^[HM]([0-9]{8}|[0-9]{10})$/.test(number) ? null :
          'v_hk_macau';
      case 'taiwan_permit':
        return /^([0-9]{8}|[0-9]{10})$/.test(number) ? null : 'v_taiwan';
      default: return null;
    }
  }

  // --- API ----------------------------------------------------------------
  class ApiError extends Error {
    constructor(error, status) {
      super(error.message || error.code);
      this.code = error.code;
      this.field = error.field || null;
      this.serverMessage = error.message || '';
      this.status = status || 0;
    }
  }

  let clockSkew = 0;  // server time - local time, in ms

  async function api(method, path, {body, headers} = {}) {
    const init = {
      method,
      cache: 'no-store',
      credentials: 'omit',
      headers: Object.assign({
        'Authorization': `Bearer ${CONFIG.key}`,
        'Accept': 'application/json',
      }, body === undefined ? {} : {'Content-Type': 'application/json'},
      headers || {}),
    };
    if (body !== undefined) init.body = body;
    let response;
    try {
      response = await fetch(CONFIG.api + path, init);
    } catch (e) {
      throw new ApiError({code: 'network', message: String(e)});
    }
    const date = Date.parse(response.headers.get('Date') || '');
    if (!Number.isNaN(date)) clockSkew = date - Date.now();
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.ok && data) return data;
    if (data && data.error && data.error.code) {
      throw new ApiError(data.error, response.status);
    }
    // No answer of the API (a proxy, a dropped connection…): the request
    // may or may not have been handled.
    throw new ApiError({code: 'network',
      message: `HTTP ${response.status}`}, response.status);
  }

  function newIdempotencyKey() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0'));
    return `${hex.slice(0, 4).join('')}-${hex.slice(4, 6).join('')}-` +
      `${hex.slice(6, 8).join('')}-${hex.slice(8, 10).join('')}-` +
      `${hex.slice(10).join('')}`;
  }

  // An error to show: a translation key (client checks) or an API error.
  function errorText(error) {
    if (!error) return '';
    if (error.key) return t(error.key, error.params);
    const key = `err_${error.code}`;
    if (key in I18N[state.lang]) {
      if (error.code === 'invalid_request' && error.message &&
          state.lang === 'en') {
        return error.message;
      }
      return t(key);
    }
    return error.message ? t('err_unknown', {message: error.message}) :
      t('err_network');
  }

  // --- state --------------------------------------------------------------
  const state = {
    lang: initialLang(),
    mode: CONFIG.mode,
    // booking form
    date: null,
    slots: null,
    slotsLoading: false,
    slotsError: null,
    slotId: null,
    qty: {},         // ticket type code → tickets (real-name) or persons
    visitors: {},    // ticket type code → [{name, id_type, id_number}]
    contact: {name: '', phone: ''},
    errors: {},      // element id → error
    formError: null,
    submitting: false,
    retry: null,     // {key, body} of a submission cut by a network error
    // orders shown (the booked one, or the pickup results)
    orders: [],
    orderUi: {},     // reference → {confirm, busy, error, note}
    // pickup
    pickup: {id: '', phone: '', ref: ''},
    searching: false,
    searched: false,
    focus: null,     // element id to focus after the next render
  };

  function setLang(lang) {
    state.lang = lang;
    try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* off */ }
    render();
  }

  // --- booking: data -------------------------------------------------------
  const selectedSlot = () =>
    (state.slots || []).find((s) => s.id === state.slotId) || null;

  function priceOf(slot, code) {
    return slot ? slot.prices.find((p) => p.ticket_type === code) : null;
  }

  function totalPersons() {
    const slot = selectedSlot();
    let persons = 0;
    for (const price of slot ? slot.prices : []) {
      const qty = state.qty[price.ticket_type] || 0;
      persons += price.real_name ? qty * (price.persons || 1) : qty;
    }
    return persons;
  }

  function estimatedTotal() {
    const slot = selectedSlot();
    let cents = 0, currency = 'CNY';
    for (const price of slot ? slot.prices : []) {
      const qty = state.qty[price.ticket_type] || 0;
      const tickets = price.real_name ? qty :
        Math.floor(qty / (price.persons || 1));
      cents += tickets * Math.round(parseFloat(price.price) * 100);
      currency = price.currency;
    }
    return money((cents / 100).toFixed(2), currency);
  }

  const slotOver = (slot) =>
    Boolean(slot.end) && Date.parse(slot.end) <= Date.now() + clockSkew;
  const bookable = (slot) =>
    !slotOver(slot) && slot.available > 0 && slot.prices.length > 0;

  async function loadSlots(date, {auto = false} = {}) {
    state.date = date;
    state.slotsLoading = true;
    state.slotsError = null;
    render();
    try {
      const data = await api('GET',
        `/availability?date=${encodeURIComponent(date)}`);
      if (state.date !== date) return;  // another day was chosen since
      state.slots = data.slots;
      if (!selectedSlot()) {
        state.slotId = null;
      }
      // Late in the day: open on the next day that can still be booked.
      const last = addDays(CONFIG.today, (CONFIG.days || 14) - 1);
      if (auto && !data.slots.some(bookable) && date < last) {
        state.slots = null;
        loadSlots(addDays(date, 1), {auto: date === CONFIG.today});
        return;
      }
    } catch (e) {
      if (state.date !== date) return;
      state.slots = null;
      state.slotsError = {code: e.code, message: e.serverMessage};
    } finally {
      if (state.date === date) state.slotsLoading = false;
      render();
    }
  }

  function chooseDate(date, focus = true, auto = false) {
    if (date === state.date && state.slots) return;
    state.slotId = null;
    state.slots = null;
    if (focus) state.focus = `date-${date}`;
    delete state.errors.slot;
    loadSlots(date, {auto});
  }

  function chooseSlot(slot) {
    state.slotId = slot.id;
    // Keep only what the new slot sells.
    for (const code of Object.keys(state.qty)) {
      if (!priceOf(slot, code)) delete state.qty[code];
    }
    delete state.errors.slot;
    state.formError = null;
    state.focus = `slot-${slot.id}`;
    render();
    // On a phone the list of times is long: bring the tickets up.
    const tickets = document.getElementById('sec-tickets');
    if (tickets && tickets.getBoundingClientRect().top >
        window.innerHeight * 0.6) {
      const smooth = !matchMedia('(prefers-reduced-motion: reduce)').matches;
      tickets.scrollIntoView({behavior: smooth ? 'smooth' : 'auto',
        block: 'start'});
    }
  }

  function changeQty(price, delta) {
    const code = price.ticket_type;
    const step = price.real_name ? 1 : (price.persons || 1);
    const slot = selectedSlot();
    let qty = (state.qty[code] || 0) + delta * step;
    const room = Math.min(slot ? slot.available : 0, 50) - totalPersons() +
      (state.qty[code] || 0) * (price.real_name ? (price.persons || 1) : 1);
    qty = Math.max(0, Math.min(qty, price.real_name ?
      Math.floor(room / (price.persons || 1)) : room - room % step));
    state.qty[code] = qty;
    if (price.real_name) {
      const list = state.visitors[code] || (state.visitors[code] = []);
      while (list.length < qty) {
        list.push({name: '', id_type: 'resident_id', id_number: ''});
      }
    }
    delete state.errors[`qty-${code}`];
    if (state.formError && state.formError.key === 'no_tickets') {
      state.formError = null;
    }
    state.focus = `${delta > 0 ? 'inc' : 'dec'}-${code}`;
    render();
  }

  // --- booking: checks and submission --------------------------------------
  function checkVisitorId(code, index) {
    const visitor = state.visitors[code][index];
    const problem = idProblem(visitor.id_type, visitor.id_number);
    const id = `v-${code}-${index}-id_number`;
    setFieldError(id, problem ? {key: problem} : null);
    return !problem;
  }

  function validateForm() {
    const errors = {};
    const slot = selectedSlot();
    if (!slot) errors.slot = {key: 'choose_slot_first'};
    let any = false;
    for (const price of slot ? slot.prices : []) {
      const code = price.ticket_type;
      const qty = state.qty[code] || 0;
      if (!qty) continue;
      any = true;
      if (price.real_name) {
        state.visitors[code].slice(0, qty).forEach((visitor, i) => {
          if (!visitor.name.trim()) errors[`v-${code}-${i}-name`] =
            {key: 'v_name'};
          const problem = idProblem(visitor.id_type, visitor.id_number);
          if (problem) errors[`v-${code}-${i}-id_number`] = {key: problem};
        });
      } else if (qty % (price.persons || 1)) {
        errors[`qty-${code}`] = {key: 'v_persons',
          params: {n: price.persons}};
      }
    }
    if (slot && !any) errors[`tickets`] = {key: 'no_tickets'};
    if (!state.contact.name.trim()) {
      errors['contact-name'] = {key: 'v_contact_name'};
    }
    if (!PHONE_RE.test(state.contact.phone.trim())) {
      errors['contact-phone'] = {key: 'v_phone'};
    }
    return errors;
  }

  function buildRequest() {
    const slot = selectedSlot();
    const items = [], codes = [];
    for (const price of slot.prices) {
      const code = price.ticket_type;
      const qty = state.qty[code] || 0;
      if (!qty) continue;
      codes.push(code);
      if (price.real_name) {
        items.push({ticket_type: code,
          visitors: state.visitors[code].slice(0, qty).map((v) => ({
            name: v.name.trim(), id_type: v.id_type,
            id_number: normalizeId(v.id_number)}))});
      } else {
        items.push({ticket_type: code, persons: qty});
      }
    }
    return {
      body: {slot: slot.id, items,
        contact: {name: state.contact.name.trim(),
          phone: state.contact.phone.trim()}},
      codes,
    };
  }

  // Where an API error's `field` is on the page: an element id.
  function fieldElementId(field, codes) {
    if (!field) return null;
    if (field === 'slot') return 'slot';
    if (field === 'items') return 'tickets';
    if (field.startsWith('contact')) {
      return field === 'contact.phone' ? 'contact-phone' : 'contact-name';
    }
    let m = /^items\[(\d+)\]\.visitors\[(\d+)\](?:\.(\w+))?/.exec(field);
    if (m && codes[+m[1]]) {
      const attr = ['name', 'id_type', 'id_number'].includes(m[3]) ?
        m[3] : 'id_number';
      return `v-${codes[+m[1]]}-${m[2]}-${attr}`;
    }
    m = /^items\[(\d+)\]/.exec(field);
    if (m && codes[+m[1]]) return `qty-${codes[+m[1]]}`;
    return null;
  }

  async function submitBooking() {
    if (state.submitting) return;
    state.formError = null;
    state.errors = validateForm();
    const ids = Object.keys(state.errors);
    if (ids.length) {
      state.formError = {key: state.errors.tickets && ids.length === 1 ?
        'no_tickets' : 'fix_errors'};
      state.focus = firstErrorTarget(ids);
      render();
      return;
    }
    const {body, codes} = buildRequest();
    const json = JSON.stringify(body);
    // The same key only to retry the very same submission after a
    // network failure; any new attempt gets a fresh one.
    const key = state.retry && state.retry.body === json ?
      state.retry.key : newIdempotencyKey();
    state.retry = null;
    state.submitting = true;
    render();
    try {
      const order = await api('POST', '/orders',
        {body: json, headers: {'Idempotency-Key': key}});
      state.orders = [order];
      state.orderUi = {};
      state.focus = 'order-heading';
      window.scrollTo(0, 0);
    } catch (e) {
      const error = {code: e.code, message: e.serverMessage};
      if (e.code === 'network') {
        state.retry = {key, body: json};
        state.formError = {key: 'retry_hint'};
        state.focus = 'book-button';
      } else {
        const id = fieldElementId(e.field, codes);
        if (id) {
          state.errors[id] = error;
          state.formError = {key: 'fix_errors'};
          state.focus = firstErrorTarget([id]);
        } else {
          state.formError = error;
          state.focus = 'book-button';
        }
        if (['sold_out', 'daily_limit'].includes(e.code)) {
          refreshSlots();
        }
      }
    } finally {
      state.submitting = false;
      render();
    }
  }

  async function refreshSlots() {
    if (!state.date) return;
    try {
      const data = await api('GET',
        `/availability?date=${encodeURIComponent(state.date)}`);
      state.slots = data.slots;
      render();
    } catch (e) { /* the list stays as it was */ }
  }

  function firstErrorTarget(ids) {
    // Page order: slot, tickets, visitors, contact.
    const order = (id) => {
      const el = document.getElementById(errorAnchor(id));
      return el ? el : null;
    };
    const present = ids.map((id) => [id, order(id)]).filter(([, el]) => el);
    present.sort(([, a], [, b]) =>
      a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ?
        -1 : 1);
    return present.length ? errorAnchor(present[0][0]) : errorAnchor(ids[0]);
  }

  // The element to focus for an error: the input, or a section heading.
  function errorAnchor(id) {
    if (id === 'slot') return 'slot-heading';
    if (id === 'tickets') return 'tickets-heading';
    if (id.startsWith('qty-')) return `inc-${id.slice(4)}`;
    return id;
  }

  function setFieldError(id, error) {
    if (error) state.errors[id] = error;
    else delete state.errors[id];
    const input = document.getElementById(id);
    const message = document.getElementById(`err-${id}`);
    if (message) {
      message.textContent = errorText(error);
      message.hidden = !error;
    }
    if (input) {
      if (error) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    }
  }

  // --- orders: pay, cancel -------------------------------------------------
  function ui(reference) {
    return state.orderUi[reference] || (state.orderUi[reference] = {});
  }

  function replaceOrder(order) {
    state.orders = state.orders.map(
      (o) => o.order === order.order ? order : o);
  }

  async function payOrder(order) {
    const u = ui(order.order);
    if (u.busy) return;
    u.busy = 'pay';
    u.error = null;
    render();
    try {
      const paid = await api('POST',
        `/orders/${encodeURIComponent(order.order)}/pay`,
        {body: JSON.stringify({provider: 'simulated', amount: order.total})});
      replaceOrder(paid);
      state.focus = `tickets-${order.order}`;
    } catch (e) {
      u.error = {code: e.code, message: e.serverMessage};
      state.focus = `pay-${order.order}`;
      if (e.code === 'not_payable') reloadOrder(order.order);
    } finally {
      u.busy = null;
      render();
    }
  }

  async function reloadOrder(reference) {
    try {
      replaceOrder(await api('GET',
        `/orders/${encodeURIComponent(reference)}`));
      render();
    } catch (e) { /* keep what is shown */ }
  }

  async function cancelOrder(order) {
    const u = ui(order.order);
    if (u.busy) return;
    u.busy = 'cancel';
    u.error = null;
    render();
    try {
      const done = await api('POST',
        `/orders/${encodeURIComponent(order.order)}/cancel`, {body: '{}'});
      replaceOrder(done);
      u.confirm = false;
      u.note = done.state === 'refunded' ?
        {key: 'refunded_note', params: {amount: money(done.total,
          done.currency)}} : {key: 'cancelled_note'};
      state.focus = `note-${order.order}`;
      if (state.mode === 'book') refreshSlots();
    } catch (e) {
      u.error = {code: e.code, message: e.serverMessage};
      u.confirm = false;
      state.focus = `cancel-${order.order}`;
    } finally {
      u.busy = null;
      render();
    }
  }

  function bookAgain() {
    state.orders = [];
    state.orderUi = {};
    state.qty = {};
    state.visitors = {};
    state.errors = {};
    state.formError = null;
    state.retry = null;
    state.focus = 'book-heading';
    refreshSlots();
    render();
  }

  // --- pickup ---------------------------------------------------------------
  async function searchOrders() {
    if (state.searching) return;
    state.errors = {};
    state.formError = null;
    const id = normalizeId(state.pickup.id);
    const phone = state.pickup.phone.trim();
    const reference = state.pickup.ref.trim();
    if (!id) state.errors['pk-id'] = {key: 'v_id_empty'};
    if (!PHONE_RE.test(phone)) state.errors['pk-phone'] = {key: 'v_phone'};
    if (!reference) state.errors['pk-ref'] = {key: 'v_ref_empty'};
    if (Object.keys(state.errors).length) {
      state.focus = ['pk-id', 'pk-phone', 'pk-ref'].find(
        (k) => state.errors[k]);
      render();
      return;
    }
    state.searching = true;
    render();
    try {
      // POST: ID numbers and phones never go in a URL (or a server log)
      const data = await api('POST', '/orders/lookup', {body: JSON.stringify(
        {id_number: id, phone: phone, reference: reference})});
      state.orders = data.orders;
      state.orderUi = {};
      state.searched = true;
      state.focus = 'results-heading';
    } catch (e) {
      const error = {code: e.code, message: e.serverMessage};
      const where = {id_number: 'pk-id', phone: 'pk-phone',
        reference: 'pk-ref'}[e.field];
      if (where) state.errors[where] = error;
      else state.formError = error;
      state.focus = where || 'search-button';
    } finally {
      state.searching = false;
      render();
    }
  }

  // --- rendering: pieces ------------------------------------------------------
  function fieldError(id) {
    const error = state.errors[id];
    return h('p', {class: 'field-error', id: `err-${id}`,
      hidden: !error, text: errorText(error)});
  }

  function inputAttrs(id) {
    const error = state.errors[id];
    return {
      id,
      'aria-invalid': error ? 'true' : null,
      'aria-describedby': `err-${id}`,
    };
  }

  function textField({id, label, value, onInput, hint, ...extra}) {
    const describedBy = [hint ? `hint-${id}` : null, `err-${id}`]
      .filter(Boolean).join(' ');
    return h('div', {class: 'field'},
      h('label', {for: id, text: label}),
      hint ? h('p', {class: 'hint', id: `hint-${id}`, text: hint}) : null,
      h('input', Object.assign(inputAttrs(id), {
        'aria-describedby': describedBy, value,
        oninput: (event) => {
          onInput(event.target.value);
          if (state.errors[id]) setFieldError(id, null);
        },
      }, extra)),
      fieldError(id));
  }

  function header() {
    const nav = h('nav', {'aria-label': t('nav')},
      h('a', {href: CONFIG.urls.book, text: t('nav_book'),
        'aria-current': state.mode === 'book' ? 'page' : null}),
      h('a', {href: CONFIG.urls.pickup, text: t('nav_pickup'),
        'aria-current': state.mode === 'pickup' ? 'page' : null}));
    return [
      h('div', {class: 'topbar-inner'},
        h('p', {class: 'brand', text: CONFIG.area || 'Scenic'}),
        h('button', {type: 'button', class: 'lang', id: 'lang-toggle',
          lang: t('switch_to_lang'), 'aria-label': t('switch_label'),
          text: t('switch_to'),
          onclick: () => {
            state.focus = 'lang-toggle';
            setLang(state.lang === 'zh' ? 'en' : 'zh');
          }})),
      nav,
    ];
  }

  function section(id, number, title, ...content) {
    return h('section', {class: 'step', id: `sec-${id}`,
      'aria-labelledby': `${id}-heading`},
    h('h2', {id: `${id}-heading`, tabIndex: -1},
      number ? h('span', {class: 'step-no', 'aria-hidden': 'true',
        text: number}) : null,
      title),
    ...content);
  }

  function dateSection() {
    const days = [];
    for (let i = 0; i < (CONFIG.days || 14); i++) {
      const date = addDays(CONFIG.today, i);
      const parts = dayParts(date);
      days.push(h('li', {},
        h('button', {type: 'button', class: 'day', id: `date-${date}`,
          dataset: {date}, 'aria-pressed': String(state.date === date),
          'aria-label': parts.full, onclick: () => chooseDate(date)},
        h('span', {class: 'day-top', text: parts.top}),
        h('span', {class: 'day-num', text: parts.day}),
        h('span', {class: 'day-month', text: parts.month}))));
    }
    return section('date', '1', t('step_date'),
      h('ul', {class: 'days', role: 'list'}, days));
  }

  function slotButton(slot) {
    const closed = slotOver(slot);
    const soldOut = slot.available <= 0 || !slot.prices.length;
    const positive = slot.prices.map((p) => parseFloat(p.price))
      .filter((p) => p > 0);
    const cheapest = positive.length ? slot.prices.find(
      (p) => parseFloat(p.price) === Math.min(...positive)) : null;
    const selected = slot.id === state.slotId;
    let status;
    if (closed) status = t('slot_closed');
    else if (soldOut) status = t('slot_sold_out');
    else status = t('places_left', {n: slot.available});
    return h('li', {},
      h('button', {type: 'button', class: 'slot', id: `slot-${slot.id}`,
        dataset: {slotId: slot.id}, 'aria-pressed': String(selected),
        disabled: closed || soldOut,
        onclick: () => chooseSlot(slot)},
      h('span', {class: 'slot-time'},
        h('span', {class: 'slot-start', text: localTime(slot.start)}),
        h('span', {class: 'slot-end', text: `–${localTime(slot.end)}`})),
      h('span', {class: 'slot-meta'},
        h('span', {class: 'slot-left', text: status}),
        cheapest && !closed && !soldOut ? h('span', {class: 'slot-price',
          text: t('from_price',
            {price: money(cheapest.price, cheapest.currency)})}) : null)));
  }

  function slotSection() {
    let content;
    if (!state.date) {
      content = h('p', {class: 'muted', text: t('choose_date_first')});
    } else if (state.slotsLoading && !state.slots) {
      content = h('p', {class: 'muted slots-loading', role: 'status',
        text: t('slots_loading')});
    } else if (state.slotsError) {
      content = h('p', {class: 'alert', role: 'alert',
        text: errorText(state.slotsError)});
    } else if (!state.slots || !state.slots.length) {
      content = h('p', {class: 'muted', role: 'status', text: t('no_slots')});
    } else if (!state.slots.some((slot) => !slotOver(slot))) {
      content = h('p', {class: 'muted', role: 'status', text: t('day_over')});
    } else {
      const groups = new Map();
      // Times that are over are left out; sold-out ones stay, disabled.
      for (const slot of state.slots.filter((s) => !slotOver(s))) {
        const key = slot.zone || '';
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(slot);
      }
      const keys = [...groups.keys()].sort();
      content = keys.map((key) => h('div', {class: 'slot-group'},
        h('h3', {text: key ? zoneName(key) : t('whole_area')}),
        h('ul', {class: 'slots', role: 'list'},
          groups.get(key).map(slotButton))));
    }
    return section('slot', '2', t('step_slot'),
      fieldError('slot'), content);
  }

  function visitorFieldset(price, code, index) {
    const visitor = state.visitors[code][index];
    const base = `v-${code}-${index}`;
    const idTypeId = `${base}-id_type`;
    return h('fieldset', {class: 'visitor', id: base},
      h('legend', {text: t('visitor_legend',
        {n: index + 1, type: typeName(code, price.name)})}),
      textField({id: `${base}-name`, label: t('name'), value: visitor.name,
        autocomplete: 'off', maxlength: '100',
        onInput: (v) => { visitor.name = v; }}),
      h('div', {class: 'field'},
        h('label', {for: idTypeId, text: t('id_type')}),
        h('select', Object.assign(inputAttrs(idTypeId), {
          onchange: (event) => {
            visitor.id_type = event.target.value;
            if (visitor.id_number) checkVisitorId(code, index);
          }}),
        ID_TYPES.map((type) => h('option', {value: type,
          selected: visitor.id_type === type, text: t(type)}))),
        fieldError(idTypeId)),
      textField({id: `${base}-id_number`, label: t('id_number'),
        value: visitor.id_number, autocomplete: 'off',
        autocapitalize: 'characters', spellcheck: 'false',
        maxlength: '40', class: 'mono',
        onInput: (v) => { visitor.id_number = v; },
        onchange: () => {
          if (visitor.id_number.trim()) checkVisitorId(code, index);
        }}));
  }

  function ticketRow(price) {
    const code = price.ticket_type;
    const qty = state.qty[code] || 0;
    const name = typeName(code, price.name);
    const step = price.real_name ? 1 : (price.persons || 1);
    const tags = [];
    if (price.real_name) tags.push(t('real_name_tag'));
    if ((price.persons || 1) > 1) {
      tags.push(t('persons_tag', {n: price.persons}));
    }
    const shown = price.real_name ? String(qty) :
      t('persons_unit', {n: qty});
    const row = h('li', {class: 'ticket-type', dataset: {ticketType: code}},
      h('div', {class: 'tt-info'},
        h('p', {class: 'tt-name', text: name}),
        tags.length ? h('p', {class: 'tt-tags', text: tags.join(' · ')}) :
          null,
        h('p', {class: 'tt-price',
          text: money(price.price, price.currency)})),
      h('div', {class: 'stepper', role: 'group',
        'aria-label': t(price.real_name ? 'qty_label' : 'persons_label',
          {name})},
      h('button', {type: 'button', class: 'step-btn', id: `dec-${code}`,
        'aria-label': t('qty_dec', {name}), disabled: qty <= 0,
        onclick: () => changeQty(price, -1), text: '−'}),
      h('output', {id: `qty-${code}`, class: 'qty', 'aria-live': 'polite',
        text: shown}),
      h('button', {type: 'button', class: 'step-btn', id: `inc-${code}`,
        'aria-label': t('qty_inc', {name}),
        disabled: totalPersons() + step > Math.min(
          selectedSlot().available, 50),
        onclick: () => changeQty(price, 1), text: '+'})),
      fieldError(`qty-${code}`));
    const visitors = [];
    if (price.real_name) {
      for (let i = 0; i < qty; i++) {
        visitors.push(visitorFieldset(price, code, i));
      }
    }
    return [row, visitors.length ?
      h('li', {class: 'visitors'}, visitors) : null];
  }

  function ticketsSection() {
    const slot = selectedSlot();
    const content = slot ?
      h('ul', {class: 'ticket-types', role: 'list'},
        slot.prices.map(ticketRow)) :
      h('p', {class: 'muted', text: t('choose_slot_first')});
    return section('tickets', '3', t('step_tickets'),
      fieldError('tickets'), content);
  }

  function contactSection() {
    return section('contact', '4', t('step_contact'),
      textField({id: 'contact-name', label: t('contact_name'),
        value: state.contact.name, autocomplete: 'name', maxlength: '100',
        onInput: (v) => { state.contact.name = v; }}),
      textField({id: 'contact-phone', label: t('contact_phone'),
        value: state.contact.phone, type: 'tel', inputmode: 'tel',
        autocomplete: 'tel', maxlength: '20', hint: t('phone_hint'),
        onInput: (v) => { state.contact.phone = v; }}));
  }

  function bookBar() {
    return h('div', {class: 'bookbar'},
      h('div', {class: 'bookbar-inner'},
        h('p', {class: 'total'},
          h('span', {class: 'total-label', text: t('total')}),
          h('span', {class: 'total-amount', id: 'total-amount',
            text: estimatedTotal()})),
        h('button', {type: 'submit', class: 'primary', id: 'book-button',
          disabled: state.submitting,
          text: state.submitting ? t('booking') : t('book')})),
      h('p', {class: 'form-error', id: 'form-error', role: 'alert',
        hidden: !state.formError, text: errorText(state.formError)}));
  }

  function bookingForm() {
    return h('form', {id: 'booking-form', novalidate: true,
      'aria-labelledby': 'book-heading',
      onsubmit: (event) => { event.preventDefault(); submitBooking(); }},
    h('div', {class: 'intro'},
      h('h1', {id: 'book-heading', tabIndex: -1, text: t('book_title')}),
      h('p', {text: t('book_intro')})),
    dateSection(), slotSection(), ticketsSection(), contactSection(),
    bookBar());
  }

  function countdownText(order) {
    const left = Date.parse(order.hold_expires_at) -
      (Date.now() + clockSkew);
    if (!(left > 0)) return null;
    const seconds = Math.floor(left / 1000);
    const mm = String(Math.floor(seconds / 60)).padStart(2, '0');
    const ss = String(seconds % 60).padStart(2, '0');
    return t('hold_left', {time: `${mm}:${ss}`});
  }

  function orderCard(order) {
    const ref = order.order;
    const u = ui(ref);
    const lines = order.lines.map((line) => h('li', {},
      h('span', {text: `${typeName(line.ticket_type, line.name)} × ` +
        `${line.quantity}`}),
      h('span', {text: money(line.amount, order.currency)})));
    const actions = [];
    let countdown = null;
    const expired = order.state === 'reserved' && !countdownText(order);
    if (order.state === 'reserved') {
      countdown = h('p', {class: expired ? 'alert' : 'countdown',
        role: 'timer', dataset: {expires: order.hold_expires_at},
        id: `countdown-${ref}`,
        text: expired ? t('hold_expired') : countdownText(order)});
      actions.push(h('button', {type: 'button', class: 'primary wide',
        id: `pay-${ref}`, disabled: Boolean(u.busy) || expired,
        onclick: () => payOrder(order),
        text: u.busy === 'pay' ? t('paying') :
          t('pay', {amount: money(order.total, order.currency)})}));
    }
    const cancellable = ['reserved', 'paid'].includes(order.state) &&
      !expired;
    if (cancellable && !u.confirm) {
      actions.push(h('button', {type: 'button', class: 'secondary wide',
        id: `cancel-${ref}`, disabled: Boolean(u.busy),
        'aria-expanded': 'false',
        onclick: () => {
          u.confirm = true;
          state.focus = `confirm-yes-${ref}`;
          render();
        },
        text: order.state === 'paid' ? t('cancel_refund') :
          t('cancel_hold')}));
    }
    let confirm = null;
    if (cancellable && u.confirm) {
      confirm = h('div', {class: 'confirm', role: 'group',
        'aria-labelledby': `confirm-q-${ref}`},
      h('p', {id: `confirm-q-${ref}`, text: order.state === 'paid' ?
        t('confirm_refund', {amount: money(order.total, order.currency)}) :
        t('confirm_cancel')}),
      h('div', {class: 'confirm-actions'},
        h('button', {type: 'button', class: 'danger',
          id: `confirm-yes-${ref}`, disabled: Boolean(u.busy),
          onclick: () => cancelOrder(order),
          text: u.busy === 'cancel' ? t('working') : t('confirm_yes')}),
        h('button', {type: 'button', class: 'secondary',
          id: `confirm-no-${ref}`, disabled: Boolean(u.busy),
          onclick: () => {
            u.confirm = false;
            state.focus = `cancel-${ref}`;
            render();
          },
          text: t('confirm_no')})));
    }
    const tickets = order.tickets || [];
    return h('article', {class: 'order card', dataset: {order: ref},
      'aria-labelledby': `order-ref-${ref}`},
    h('div', {class: 'order-head'},
      h('p', {class: 'order-ref', id: `order-ref-${ref}`},
        h('span', {class: 'muted', text: `${t('order_ref')} `}),
        h('span', {class: 'mono', text: ref})),
      h('p', {class: `badge state-${order.state}`,
        text: t(`state_${order.state}`)})),
    h('dl', {class: 'facts'},
      h('div', {}, h('dt', {text: t('visit')}),
        h('dd', {text: windowText(order.slot.start, order.slot.end)})),
      order.contact && order.contact.name ? h('div', {},
        h('dt', {text: t('contact')}),
        h('dd', {text: order.contact.name})) : null),
    h('ul', {class: 'lines', role: 'list'}, lines),
    h('p', {class: 'order-total'},
      h('span', {text: t('total')}),
      h('span', {class: 'total-amount', text: money(order.total,
        order.currency)})),
    countdown,
    u.note ? h('p', {class: 'note', id: `note-${ref}`, tabIndex: -1,
      role: 'status', text: t(u.note.key, u.note.params)}) : null,
    h('p', {class: 'alert', role: 'alert', id: `order-error-${ref}`,
      hidden: !u.error, text: errorText(u.error)}),
    actions.length ? h('div', {class: 'actions'}, actions) : null,
    confirm,
    tickets.length ? ticketList(order, tickets) : null);
  }

  function ticketList(order, tickets) {
    const ref = order.order;
    const names = Object.fromEntries(order.lines.map(
      (l) => [l.ticket_type, l.name]));
    return h('section', {class: 'tickets', 'aria-labelledby':
      `tickets-${ref}`},
    h('h3', {id: `tickets-${ref}`, tabIndex: -1, text: t('tickets_title')}),
    h('p', {class: 'hint', text: t('gate_hint')}),
    h('ul', {class: 'ticket-cards', role: 'list'},
      tickets.map((ticket, i) => {
        const name = typeName(ticket.ticket_type,
          names[ticket.ticket_type]);
        const usable = ['valid', 'used'].includes(ticket.state);
        return h('li', {class: `ticket-card ticket-${ticket.state}`,
          dataset: {ticketId: ticket.id}},
        h('div', {class: 'ticket-head'},
          h('p', {class: 'ticket-name', text: name}),
          h('p', {class: `badge tstate-${ticket.state}`,
            text: t(`ticket_state_${ticket.state}`)})),
        usable ? h('img', {class: 'qr', src: ticket.qr_svg_url,
          width: '225', height: '225', decoding: 'async',
          alt: t('qr_alt', {type: name})}) : null,
        h('dl', {class: 'facts'},
          h('div', {}, h('dt', {text: t('holder')}),
            h('dd', {class: 'mono holder', text: ticket.holder || '—'})),
          ticket.persons > 1 ? h('div', {}, h('dt', {text: t('persons')}),
            h('dd', {text: String(ticket.persons)})) : null,
          h('div', {}, h('dt', {text: t('valid')}),
            h('dd', {text: windowText(ticket.valid_from,
              ticket.valid_until)})),
          ticket.entries !== undefined && ticket.entries !== 1 ?
            h('div', {}, h('dt', {text: t('entries')}),
              h('dd', {text: ticket.entries === 0 ? t('entries_unlimited') :
                String(ticket.entries)})) : null),
        h('p', {class: 'ticket-of', text: t('ticket_of',
          {n: i + 1, total: tickets.length})}));
      })));
  }

  function orderView() {
    return h('div', {class: 'order-view'},
      h('h1', {id: 'order-heading', tabIndex: -1, text: t('order_title')}),
      state.orders.map(orderCard),
      h('button', {type: 'button', class: 'secondary wide',
        id: 'book-again', onclick: bookAgain, text: t('book_again')}));
  }

  function pickupView() {
    const results = [];
    if (state.searched) {
      results.push(h('h2', {id: 'results-heading', tabIndex: -1,
        class: state.orders.length ? '' : 'empty',
        text: state.orders.length ?
          t('orders_found', {n: state.orders.length}) : t('no_orders')}));
      results.push(...state.orders.map(orderCard));
    }
    return [
      h('form', {id: 'pickup-form', novalidate: true,
        'aria-labelledby': 'pickup-heading',
        onsubmit: (event) => { event.preventDefault(); searchOrders(); }},
      h('div', {class: 'intro'},
        h('h1', {id: 'pickup-heading', tabIndex: -1,
          text: t('pickup_title')}),
        h('p', {text: t('pickup_intro')})),
      h('div', {class: 'step'},
        textField({id: 'pk-id', label: t('pickup_id'),
          value: state.pickup.id, autocomplete: 'off',
          autocapitalize: 'characters', spellcheck: 'false',
          maxlength: '40', class: 'mono',
          onInput: (v) => { state.pickup.id = v; }}),
        textField({id: 'pk-phone', label: t('contact_phone'),
          value: state.pickup.phone, type: 'tel', inputmode: 'tel',
          autocomplete: 'tel', maxlength: '20',
          onInput: (v) => { state.pickup.phone = v; }}),
        textField({id: 'pk-ref', label: t('pickup_ref'),
          value: state.pickup.ref, autocomplete: 'off',
          autocapitalize: 'characters', spellcheck: 'false',
          maxlength: '40', class: 'mono',
          onInput: (v) => { state.pickup.ref = v; }}),
        h('p', {class: 'form-error', role: 'alert', id: 'form-error',
          hidden: !state.formError, text: errorText(state.formError)}),
        h('button', {type: 'submit', class: 'primary wide',
          id: 'search-button', disabled: state.searching,
          text: state.searching ? t('searching') : t('search')}))),
      h('div', {class: 'results', id: 'results'}, results),
    ];
  }

  // --- rendering: the page ----------------------------------------------------
  function render() {
    const active = document.activeElement;
    const focusId = state.focus ||
      (active && active !== document.body ? active.id : null);
    state.focus = null;
    document.documentElement.lang = t('html_lang');
    document.title = `${CONFIG.area ? CONFIG.area + ' · ' : ''}` +
      (state.mode === 'pickup' ? t('pickup_title') :
        state.orders.length ? t('order_title') : t('book_title'));
    document.getElementById('topbar').replaceChildren(...header());
    const main = document.getElementById('main');
    let content;
    if (state.mode === 'pickup') content = pickupView();
    else if (state.orders.length) content = [orderView()];
    else content = [bookingForm()];
    main.replaceChildren(...content,
      h('p', {class: 'footnote', text: t('simulated_note')}));
    if (focusId) {
      const el = document.getElementById(focusId);
      if (el && el !== document.activeElement) {
        el.focus({preventScroll: el.tagName !== 'INPUT' &&
          el.tagName !== 'SELECT' && !el.id.endsWith('heading') &&
          !el.id.startsWith('tickets-') && !el.id.startsWith('note-') &&
          !el.id.startsWith('confirm-')});
        // Typing goes on where it was.
        if (active && active.id === focusId && el.tagName === 'INPUT' &&
            typeof active.selectionStart === 'number') {
          try {
            el.setSelectionRange(active.selectionStart, active.selectionEnd);
          } catch (e) { /* not a text input */ }
        }
      }
    }
  }

  function tick() {
    let expired = false;
    for (const el of document.querySelectorAll('[data-expires]')) {
      const order = state.orders.find(
        (o) => o.hold_expires_at === el.dataset.expires &&
          o.state === 'reserved');
      if (!order) continue;
      const text = countdownText(order);
      if (text) el.textContent = text;
      else if (el.classList.contains('countdown')) expired = true;
    }
    if (expired) render();
  }

  render();
  setInterval(tick, 1000);
  if (state.mode === 'book') chooseDate(CONFIG.today, false, true);
})();
