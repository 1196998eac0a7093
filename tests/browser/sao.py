"""Driving sao in the browser tests: log in, read the active list."""


def login(browser, wait, url, database, user, password):
    "Open sao on database, log in and wait for the menu (wait: bounded)."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    browser.get(f'{url}#{database}')
    login = wait.until(EC.visibility_of_element_located((By.ID, 'login')))
    login.send_keys(user, Keys.ENTER)
    password_input = wait.until(EC.visibility_of_element_located(
            (By.CSS_SELECTOR, 'input[type=password]')))
    password_input.send_keys(password, Keys.ENTER)
    wait.until(EC.invisibility_of_element_located(
            (By.CSS_SELECTOR, 'input[type=password]')))
    wait.until(lambda d: d.execute_script(
            "return document.querySelectorAll("
            "'#menu .treeview tbody > tr').length") > 0)


def rows(driver):
    "Data rows of the list in the active tab (-1 without a tab)."
    return driver.execute_script("""
        const pane = document.querySelector('#tabs .tab-pane.active')
            || document.querySelector('.tab-pane.active');
        if (!pane) { return -1; }
        return pane.querySelectorAll(
            '.treeview tbody > tr:not(.more-row)').length;
        """)


def table(driver):
    """The list of the active tab as {column title: [cell texts]}."""
    return driver.execute_script("""
        const pane = document.querySelector('#tabs .tab-pane.active')
            || document.querySelector('.tab-pane.active');
        const titles = [...pane.querySelectorAll('.treeview thead th')]
            .map(th => th.textContent.trim());
        const result = {};
        titles.forEach(t => { result[t] = []; });
        pane.querySelectorAll('.treeview tbody > tr:not(.more-row)')
            .forEach(tr => {
                [...tr.children].forEach((td, i) => {
                    if (titles[i]) { result[titles[i]].push(
                        td.textContent.trim()); }
                });
            });
        return result;
        """)


def safe_rows(driver):
    try:
        return rows(driver)
    except Exception:
        return '?'
