// <mall-login>: sign up or log in; on success the session holds the token.

import { t } from 'mall/i18n.js';
import { session } from 'mall/session.js';
import { MallView, api, errorBox } from 'mall/view.js';
import { LoginViewModel } from './login-vm.js';

class LoginView extends MallView {
  createViewModel() {
    return new LoginViewModel(api, (token) => {
      session.logIn(token);
      location.hash = '#/';
    });
  }

  intent(action, fields) {
    if (action === 'login') this.vm.logIn(fields);
    if (action === 'signup') this.vm.signUp(fields);
    if (action === 'to-signup') this.vm.switchTo('signup');
    if (action === 'to-login') this.vm.switchTo('login');
  }

  template(vm) {
    const signup = vm.mode === 'signup';
    return `<div class="card"><h1>${signup ? t({ en: 'Sign up', ko: '회원가입' }) : t({ en: 'Log in', ko: '로그인' })}</h1>
      <form data-action="${signup ? 'signup' : 'login'}">
        ${signup ? `<label>${t({ en: 'Name', ko: '이름' })}<input name="name" autocomplete="name" required></label>` : ''}
        <label>${t({ en: 'Email', ko: '이메일' })}<input name="email" type="email" autocomplete="email" required></label>
        <label>${t({ en: 'Password', ko: '비밀번호' })}<input name="password" type="password" autocomplete="${signup ? 'new-password' : 'current-password'}" required minlength="${signup ? 8 : 1}"></label>
        ${errorBox(vm.error)}
        <button class="primary" ${vm.busy ? 'disabled' : ''}>${signup ? t({ en: 'Create my account', ko: '가입하기' }) : t({ en: 'Log in', ko: '로그인' })}</button>
      </form>
      <p><button type="button" data-action="${signup ? 'to-login' : 'to-signup'}">${signup ? t({ en: 'I have an account', ko: '이미 계정이 있습니다' }) : t({ en: 'New here? Sign up', ko: '처음이신가요? 회원가입' })}</button></p></div>`;
  }
}

customElements.define('mall-login', LoginView);
