// Korean and English. Each component carries its own words as { en, ko } pairs, so a team
// translates its part without touching the others; the shell only picks the language.

const KEY = 'mall.lang';

export function lang() {
  return document.documentElement.lang === 'ko' ? 'ko' : 'en';
}

export function t(texts) {
  return texts[lang()] ?? texts.en;
}

export function setLang(next) {
  localStorage.setItem(KEY, next);
  document.documentElement.lang = next;
  document.dispatchEvent(new CustomEvent('mall:lang'));
}

export function initialLang() {
  const saved = localStorage.getItem(KEY);
  if (saved === 'ko' || saved === 'en') return saved;
  return navigator.language?.startsWith('ko') ? 'ko' : 'en';
}

export function money(krw) {
  return new Intl.NumberFormat(lang() === 'ko' ? 'ko-KR' : 'en-US', { style: 'currency', currency: 'KRW' }).format(krw);
}

export function when(iso) {
  return new Date(iso).toLocaleString(lang() === 'ko' ? 'ko-KR' : 'en-US');
}

/** Order, payment and delivery statuses in words. */
const STATUS = {
  PENDING: { en: 'Pending', ko: '처리 중' },
  CONFIRMED: { en: 'Confirmed', ko: '확정' },
  DELIVERING: { en: 'On its way', ko: '배송 중' },
  DELIVERED: { en: 'Delivered', ko: '배송 완료' },
  REJECTED: { en: 'Rejected', ko: '거절됨' },
  CANCELLED: { en: 'Cancelled', ko: '취소됨' },
  AUTHORIZED: { en: 'Paid', ko: '결제 완료' },
  DECLINED: { en: 'Declined', ko: '결제 거절' },
  REFUNDED: { en: 'Refunded', ko: '환불됨' },
  STARTED: { en: 'On its way', ko: '배송 중' },
  COMPLETED: { en: 'Delivered', ko: '배송 완료' },
};

export function status(code) {
  return code ? t(STATUS[code] ?? { en: code, ko: code }) : '—';
}
