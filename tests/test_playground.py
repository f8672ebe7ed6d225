"""retrograd explain --html / rg.viz.playground: the recorded numbers against explain and
autodiff, the page's self-containment, the CLI, and the page itself in headless Chromium."""
import base64
import html as htmllib
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import retrograd as rg
from retrograd import classic
from retrograd import explain as ex
from retrograd.viz.playground import expression_playground, playground

from _cdp import Browser, find_browser

XOR_X = [[0, 0], [0, 1], [1, 0], [1, 1]]
XOR_Y = [0, 1, 1, 0]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _norm(text):
    """explain pads its columns: compare with every run of 3+ spaces as 3."""
    return re.sub(r" {3,}", "   ", text)


def _data(page_html):
    blob = re.search(r'<script type="application/json">(.*?)</script>', page_html, re.S).group(1)
    return json.loads(blob)


# ---------------------------------------------------------------- the numbers

CONFIGS = [{}, {"layers": (2, 1)}, {"layers": (2, 3, 2), "loss": "cross_entropy"},
           {"layers": (2, 3, 2), "activation": "relu", "output": "softmax"},
           {"layers": (3, 2, 2, 1), "activation": "tanh", "loss": "mse", "seed": 4},
           {"layers": (2, 4, 3), "activation": "relu", "output": "identity", "lr": 0.1}]


@pytest.mark.parametrize("kw", CONFIGS)
def test_panel_lines_are_explains_own_lines(kw):
    text = _norm(ex.explain_network(**kw))
    args = dict(kw)
    step = playground(args.pop("layers", (2, 2, 1)), steps=1, **args).data["steps"][0]
    pat = step["pats"][0]
    shown = [t for lines in pat["lines"].values() for _, t in lines] + list(step["update"].values())
    assert len(shown) > 10 and step["after"] in text
    for line in shown:
        if line.startswith("δ = −∂E/∂b("):           # the ✓ of a δ: −(the printed ∂E/∂b)
            name, value = re.match(r"δ = −∂E/∂(b\(\w+\)): autodiff (\S+) ✓", line).groups()
            printed = re.search(rf"∂E/∂{re.escape(name)} = .*? = (\S+)   autodiff", text).group(1)
            assert float(value) == pytest.approx(-float(printed), rel=1e-6, abs=1e-12)
        else:
            assert line in text, line


def test_step_numbers_equal_network_numbers_and_train():
    data = playground(steps=5).data
    spec = ex.NetworkSpec.from_arguments()
    nums = ex.network_numbers(spec)
    s0 = data["steps"][0]
    W, b = ex.network_weights((2, 2, 1))
    assert all(np.array_equal(s0["W"][l], W[l]) for l in range(2))
    for key, want in (("delta", nums.delta), ("net", nums.net), ("gW", nums.grad_W.autodiff)):
        for got, w in zip(s0["pats"][0][key], want):
            np.testing.assert_allclose(got, w, rtol=1e-9, atol=1e-12)
    assert s0["E"] == pytest.approx(nums.E) and s0["E_after"] == pytest.approx(nums.E_after)
    for a, c in zip(data["steps"], data["steps"][1:]):       # each step starts from the update
        assert a["newW"] == c["W"] and a["newb"] == c["b"]
    assert data["loss"] == sorted(data["loss"], reverse=True)  # one pattern: downhill
    assert [p["name"][:2] for p in data["phases"]] == ["1.", "2.", "3.", "4.", "5."]


def test_batch_xor_gradient_is_the_sum_over_patterns():
    data = playground((2, 2, 1), XOR_X, XOR_Y, steps=3, mode="batch").data
    for s, E in zip(data["steps"], data["loss"]):
        assert E == pytest.approx(s["E"])               # the curve: Σ_p E_p at the step's W
        assert s["patterns"] == [0, 1, 2, 3]
        W = [np.array(w) for w in s["W"]]
        b = [np.array(v) for v in s["b"]]
        r = classic.backprop(W, b, ["sigmoid", "sigmoid"], np.array(XOR_X, float),
                             np.array(XOR_Y, float)[:, None], loss="sse", reduction="sum")
        for l in range(2):
            np.testing.assert_allclose(s["gW"][l], r.grad_W[l], rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(s["newW"][l], W[l] - 0.5 * r.grad_W[l], rtol=1e-12)
        assert s["E"] == pytest.approx(r.loss)
        assert s["sums"]["w-1-0-0"].endswith(f"= {ex._n(r.grad_W[1][0, 0])}")


def test_per_pattern_xor_cycles_and_matches_torch():
    torch = pytest.importorskip("torch")
    data = playground((2, 2, 1), XOR_X, XOR_Y, steps=6, lr=0.7).data
    assert [s["patterns"] for s in data["steps"]] == [[0], [1], [2], [3], [0], [1]]
    for s in data["steps"]:
        p = s["patterns"][0]
        Wt = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in s["W"]]
        bt = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in s["b"]]
        a = torch.tensor(XOR_X[p], dtype=torch.float64)
        for w, v in zip(Wt, bt):
            a = torch.sigmoid(a @ w + v)
        E = 0.5 * ((XOR_Y[p] - a) ** 2).sum()
        E.backward()
        for l in range(2):
            np.testing.assert_allclose(s["gW"][l], Wt[l].grad.numpy(), rtol=1e-9, atol=1e-13)
            np.testing.assert_allclose(s["newb"][l], bt[l].detach().numpy()
                                       - 0.7 * bt[l].grad.numpy(), rtol=1e-12)
        assert s["pats"][0]["ok"]


def test_sequential_model_weights_are_read():
    model = rg.nn.Sequential(rg.nn.Linear(2, 3, dtype=np.float64), rg.nn.Tanh(),
                             rg.nn.Linear(3, 1, dtype=np.float64), rg.nn.Sigmoid())
    before = model[0].weight.data.copy()
    data = playground(model, [1.0, -1.0], [1.0], steps=2, lr=0.1).data
    assert np.array_equal(data["steps"][0]["W"][0], before)
    assert np.array_equal(model[0].weight.data, before)             # the model is untouched
    assert data["activations"] == ["tanh", "sigmoid"] and data["sizes"] == [2, 3, 1]
    x = rg.tensor(np.array([[1.0, -1.0]]))
    E = 0.5 * ((1.0 - model(x)) ** 2).sum()
    g = rg.autodiff.grad(E, [model[0].weight])[0].numpy()
    np.testing.assert_allclose(data["steps"][0]["gW"][0], g, rtol=1e-9, atol=1e-13)


def test_landscape_is_the_loss_over_the_pair():
    data = playground((2, 2, 1), XOR_X, XOR_Y, steps=10, mode="batch").data
    land, s0 = data["landscape"], data["steps"][0]
    (la, ua, ta), (lb, ub, tb) = [tuple(map(int, k.split("-")[1:])) for k in (land["ida"],
                                                                             land["idb"])]
    assert land["path"][0][0] == s0["W"][la][ua][ta] and land["path"][1][0] == s0["W"][lb][ub][tb]
    assert len(land["path"][0]) == len(data["loss"]) == 11
    i, j = 4, 13
    W = [np.array(w) for w in s0["W"]]
    W[la][ua, ta], W[lb][ub, tb] = land["A"][j], land["B"][i]
    sig = lambda z: 1 / (1 + np.exp(-z))
    o = sig(sig(np.array(XOR_X) @ W[0] + s0["b"][0]) @ W[1] + s0["b"][1])
    assert land["Z"][i][j] == pytest.approx(0.5 * ((np.array(XOR_Y)[:, None] - o) ** 2).sum())


def test_expression_lines_are_explains():
    text = _norm(ex.explain_expression("sin(x1) + x1*x2", "x1=2,x2=5"))
    nodes = expression_playground("sin(x1) + x1*x2", "x1=2,x2=5").data["nodes"]
    for n in nodes:
        assert n["adjoint"] in text
        for line in [n["forward"]] + ([n["check"]] if "check" in n else []):
            assert line in text, line
    assert nodes[0]["bar"] == pytest.approx(np.cos(2) + 5)
    assert "✓" in nodes[0]["check"] and nodes[4]["edges"] == []


def test_page_is_self_contained_and_escaped():
    page = playground().html()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    urls = set(re.findall(r"https?://[^\s'\"<>]+", page))
    # the SVG namespace is a name createElementNS needs, never fetched
    assert urls == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<link|<img|<iframe|\ssrc=|@import|url\(", page)
    # "</script>" in a title or expression cannot end the data block
    evil = expression_playground("x1 + x2", {"x1": 1, "x2": 2})
    evil.data["title"] = "</script><script>alert(1)</script>"
    assert _data(evil.html())["title"] == evil.data["title"]


def test_repr_html_is_an_isolated_iframe():
    a, b = playground(steps=2), expression_playground("x1*x1", "x1=3")
    ra, rb = a._repr_html_(), b._repr_html_()
    for r, p in ((ra, a), (rb, b)):
        assert r.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in r
        assert htmllib.unescape(re.search(r'srcdoc="(.*?)"', r, re.S).group(1)) == p.html()


def test_limits_are_one_line_errors():
    with pytest.raises(rg.RetrogradError, match="at most 48 units"):
        playground((16, 16, 16, 1))
    with pytest.raises(rg.RetrogradError, match="steps must be"):
        playground(steps=0)
    with pytest.raises(rg.RetrogradError, match="cannot draw a Dropout"):
        playground(rg.nn.Sequential(rg.nn.Linear(2, 1), rg.nn.Dropout(0.5)))


# ---------------------------------------------------------------- the command line

def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "retrograd", "explain", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_writes_the_page(tmp_path):
    out = tmp_path / "step.html"
    r = _cli("--html", str(out), "--steps", "3")
    assert r.returncode == 0 and r.stdout.strip() == f"wrote {out}"
    d = _data(out.read_text())
    assert d["steps"][0]["pats"][0]["lines"] == playground(steps=3).data["steps"][0]["pats"][0]["lines"]
    r = _cli("--html", str(out), "--layers", "2-2-1", "--input", "0,0;0,1;1,0;1,1", "--target",
             "0;1;1;0", "--steps", "4", "--batch", "--lr", "2", "--seed", "1")
    assert r.returncode == 0
    d = _data(out.read_text())
    assert d["mode"] == "batch" and len(d["steps"][0]["pats"]) == 4 and len(d["loss"]) == 5
    r = _cli("--html", str(out), "--expr", "sin(x1) + x1*x2", "--at", "x1=2,x2=5")
    assert r.returncode == 0 and _data(out.read_text())["kind"] == "expression"


@pytest.mark.parametrize("args", [
    ["--expr", "x1", "--layers", "2-2-1"], ["--rnn"], ["--input", "0,0;1,1"],
    ["--input", "1,0,1"], ["--layers", "2-20-1"], ["--steps", "500"], ["--expr", "x1"],
    ["--activation", "sigmoid", "--loss", "cross_entropy", "--target", "2"],
    ["--input", "0,0;1", "--target", "0;1"], ["--input", "0,0;1,1", "--target", "0;1;1"],
    ["--input", "x"], ["--lr", "-1"], ["--steps", "0"]])
def test_cli_errors_are_one_line_and_keep_the_old_file(tmp_path, args):
    out = tmp_path / "step.html"
    out.write_text("the student's own file")
    r = _cli("--html", str(out), *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert out.read_text() == "the student's own file"


def test_cli_html_flags_need_html():
    r = _cli("--steps", "3")
    assert r.returncode == 2 and r.stderr.strip() == ("retrograd explain: --steps is for the "
                                                      "page of --html")


# ---------------------------------------------------------------- in a real browser

@pytest.fixture(scope="module")
def browser():
    path = find_browser()
    if path is None:
        pytest.skip("no Chromium installed (apt-get install chromium; .ci/run does): the "
                    "page is not tested in a browser")
    b = Browser(path)
    yield b
    b.close()


def _open(b, tmp_path, page, name):
    f = tmp_path / name
    page.save(f)
    b.events.clear()
    for domain in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
        b.page(domain)
    url = f.as_uri()
    b.page("Page.navigate", url=url)
    b.wait_for("!!document.querySelector('.rg-playground[data-ready=\"1\"]')")
    return url


def _problems(b, url):
    """Console errors, exceptions and requests for anything but the page itself."""
    bad = []
    for e in b.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            bad.append(p["exceptionDetails"].get("text"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            bad.append(str(p.get("args")))
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            bad.append(p["entry"]["text"])
        elif m == "Network.requestWillBeSent" and p["request"]["url"] != url:
            bad.append("request " + p["request"]["url"])
    return bad


def _mouse(b, selector, click=False):
    """A real mouse move (and click) at the middle of the element, through CDP's Input."""
    x, y = b.js(f"(() => {{const r = document.querySelector({json.dumps(selector)})"
                ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]})()")
    b.page("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    if click:
        for kind in ("mousePressed", "mouseReleased"):
            b.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def _click(b, selector):
    _mouse(b, selector, click=True)


def _hover(b, item):
    _mouse(b, f'[data-id="{item}"] circle, [data-id="{item}"] line:last-child')
    return b.js("document.querySelector('.panel').textContent")


def _panel_of(b, item):
    b.js(f"document.querySelector('[data-id=\"{item}\"]').focus()")
    return b.js("document.querySelector('.panel').textContent")


def test_browser_steps_through_the_notes_net(browser, tmp_path):
    pg = playground(steps=5)
    url = _open(browser, tmp_path, pg, "net.html")
    text = _norm(ex.explain_network())
    nums = ex.network_numbers(ex.NetworkSpec.from_arguments())
    b = browser
    assert b.js("document.querySelector('.phase').textContent") == "1. forward: net and o"
    assert "o_k1 = sigmoid(net_k1) = 0.6251277" in _hover(b, "u-2-0")
    assert "δ" not in _panel_of(b, "u-2-0")                  # not computed yet
    _click(b, ".nextphase")
    assert b.js("document.querySelector('.phase').textContent").startswith("2. output deltas")
    delta_k = b.js("+document.querySelector('[data-id=\"u-2-0\"] .val').dataset.delta")
    assert delta_k == pytest.approx(nums.delta[1][0], rel=1e-12)
    assert b.js("document.querySelector('[data-id=\"u-1-0\"] .val').dataset.delta") is None
    panel = _panel_of(b, "u-2-0")
    assert "δ_k1 = (1 − 0.6251277)·0.2343431 = 0.08784872" in panel and "✓" in panel
    _click(b, ".nextphase")                                  # back-propagated to the j layer
    for j in range(2):
        got = b.js(f"+document.querySelector('[data-id=\"u-1-{j}\"] .val').dataset.delta")
        assert got == pytest.approx(nums.delta[0][j], rel=1e-12)
        lines = _panel_of(b, f"u-1-{j}").splitlines()
        assert lines[3].startswith(f"δ_j{j + 1} = (") and lines[3] in text
        assert _norm(lines[2]) in text and lines[4].endswith("✓")
    b.js("document.querySelector('[data-id=\"u-0-0\"]').focus()")
    b.page("Input.dispatchKeyEvent", type="keyDown", key="ArrowRight", code="ArrowRight",
           windowsVirtualKeyCode=39)                         # the keyboard: ∂E/∂w on every edge
    assert b.js("document.querySelector('.phase').textContent").startswith("4. ∂E/∂w")
    panel = _hover(b, "w-1-0-0")
    assert _norm(panel) in text and "autodiff -0.062456 ✓" in panel
    width = b.js("+document.querySelector('[data-id=\"w-1-0-0\"] line').dataset.value")
    assert width == pytest.approx(-nums.grad_W.by_hand[1][0, 0])
    _click(b, ".nextphase")                                  # the update
    assert "w(k1←j1) = 0.21 + 0.5·0.08784872·0.7109495 = 0.241228" in _panel_of(b, "w-1-0-0")
    assert "after the update E = " in b.js("document.querySelector('.loss').textContent")
    _click(b, ".nextstep")
    assert b.js("document.querySelector('.rg-playground').dataset.step") == "1"
    assert "0.241228·" in _panel_of(b, "u-2-0")              # step 2 starts from the update
    # a fetch is refused by the page's CSP (and nothing was requested but the page)
    assert b.js("fetch('http://127.0.0.1:9/x').then(() => 'fetched', () => 'blocked')") == "blocked"
    b.events[:] = [e for e in b.events if e.get("method") != "Log.entryAdded"]  # the CSP's report
    assert _problems(b, url) == []
    assert b.js("performance.getEntriesByType('resource').length") == 0
    png = base64.b64decode(b.page("Page.captureScreenshot", format="png")["data"])
    mpimg = pytest.importorskip("matplotlib.image")
    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    assert img.shape[0] > 300 and img.std() > 0.05              # not blank
    assert len(np.unique((img * 255).astype(int).reshape(-1, 3), axis=0)) > 50


def test_browser_play_xor_and_a_wider_net(browser, tmp_path):
    for name, pg in (("xor.html", playground((2, 2, 1), XOR_X, XOR_Y, steps=8, mode="batch")),
                     ("wide.html", playground((2, 10, 10, 1), XOR_X, XOR_Y, steps=6))):
        url = _open(browser, tmp_path, pg, name)
        n_units = sum(pg.data["sizes"])
        assert browser.js("document.querySelectorAll('[data-id^=\"u-\"]').length") == n_units
        browser.js("document.querySelector('.speed').value = 10")
        _click(browser, ".play")
        browser.wait_for("document.querySelector('.rg-playground').dataset.step !== '0'", 20)
        _click(browser, ".play")                              # pause
        assert browser.js("document.querySelector('.play').textContent") == "play"
        assert _problems(browser, url) == []
        if name == "xor.html":          # batch: pick pattern 4, x = (1, 1), in the forward phase
            browser.js("for (const [c, v] of [['.patsel', '3'], ['.phasesel', '0']]) {"
                       "const s = document.querySelector(c); s.value = v; "
                       "s.dispatchEvent(new Event('change'))}")
            shown = browser.js("[...document.querySelectorAll('[data-id^=\"u-\"] .val')]"
                               ".map(e => e.textContent)")
            step = int(browser.js("document.querySelector('.rg-playground').dataset.step"))
            o = pg.data["steps"][step]["pats"][3]["o"]
            assert shown[:2] == ["o=1", "o=1"]
            assert float(shown[-1][2:]) == pytest.approx(o[-1][0], rel=1e-3)
            browser.js("const s = document.querySelector('.phasesel'); s.value = '3'; "
                       "s.dispatchEvent(new Event('change'))")        # ∂E/∂w: and its Σ_p
            panel = _panel_of(browser, "w-1-0-0")
            assert pg.data["steps"][step]["sums"]["w-1-0-0"] in panel
            assert pg.data["steps"][step]["pats"][3]["lines"]["w-1-0-0"][0][1] in panel


def test_browser_expression_adjoints_flow_back(browser, tmp_path):
    pg = expression_playground("sin(x1) + x1*x2", "x1=2,x2=5")
    url = _open(browser, tmp_path, pg, "expr.html")
    n = len(pg.data["nodes"])
    browser.js(f"var s = document.querySelector('.phasesel'); s.value = '{2 * n - 1}'; "
               "s.dispatchEvent(new Event('change'))")             # the last adjoint: w̄1
    bar1 = browser.js("+document.querySelector('[data-id=\"n-1\"] .val').dataset.bar")
    assert bar1 == pytest.approx(np.cos(2) + 5)
    _click(browser, ".nextphase")
    panel = _hover(browser, "n-1")
    assert "autodiff 4.583853 ✓" in panel and pg.data["nodes"][0]["adjoint"] in panel
    panel = _hover(browser, "e-1-3")                          # the edge w1 → w3 = sin(w1)
    assert "∂w3/∂w1 = cos(w1) = -0.4161468" in panel
    assert _problems(browser, url) == []


def test_browser_two_playgrounds_in_one_notebook(browser, tmp_path):
    """Two _repr_html_ outputs in one page (as a notebook shows them) each run on their own."""
    a, e = playground(steps=2), expression_playground("x1*x1", "x1=3")
    host = tmp_path / "notebook.html"
    host.write_text(f"<!DOCTYPE html><html><body>{a._repr_html_()}{e._repr_html_()}</body></html>")
    b = browser
    b.events.clear()
    # the sandboxed iframes are opaque origins, which Chromium runs as their own targets
    b.page("Target.setAutoAttach", autoAttach=True, waitForDebuggerOnStart=False, flatten=True)
    b.page("Page.navigate", url=host.as_uri())
    b.wait_for("document.readyState === 'complete'")
    sessions = []
    for _ in range(100):
        b.js("1")                                           # collect the attach events
        sessions = [ev["params"]["sessionId"] for ev in b.events
                    if ev.get("method") == "Target.attachedToTarget"
                    and ev["params"]["targetInfo"]["type"] == "iframe"]
        if len(sessions) == 2:
            break
    assert len(sessions) == 2

    def run(i, expression, tries=1):
        for _ in range(tries):                  # tries > 1: wait for the frame's script
            v = b.call("Runtime.evaluate", session=sessions[i], expression=expression,
                       returnByValue=True)["result"].get("value")
            if v is not None:
                return v
        return None

    for i in (0, 1):
        assert run(i, "document.querySelector('.rg-playground')?.dataset.ready", 200) == "1"
    run(0, "document.querySelector('.nextphase').click()")
    assert run(0, "document.querySelector('.rg-playground').dataset.phase") == "1"
    assert run(1, "document.querySelector('.rg-playground').dataset.phase") == "0"
    assert run(1, "document.querySelector('.title').textContent").startswith(
        "reverse-mode autodiff of f = x1*x1")
    assert not [ev for ev in b.events if ev.get("method") == "Runtime.exceptionThrown"]
    b.page("Target.setAutoAttach", autoAttach=False, waitForDebuggerOnStart=False, flatten=True)
