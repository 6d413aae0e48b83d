package gateway_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/winchhq/winch/gateway"
	"github.com/winchhq/winch/internal/testenv"
	"github.com/winchhq/winch/schema"
)

// browser starts headless Chromium (Debian's chromium) for the test, at
// 1280×800. It is missing → a skip, or a failure where WINCH_TEST_REQUIRE
// names chromium (CI).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Missing(t, "chromium", fmt.Errorf("no chromium on PATH (apt-get install chromium): %w", err))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	return ctx
}

// shot saves a full-page screenshot, named by the test and the step, in
// $WINCH_ARTIFACTS (make test sets it to out/screens, which CI keeps), or
// else among the test's artifacts (kept with go test -artifacts).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("WINCH_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", file)
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage: %s", what, err, page)
	}
}

// void drops an action's value, to run it among steps.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := a(ctx, tg)
		return err
	})
}

// get runs one action that gives a value.
func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[T](expr))
}

// labelled checks what a keyboard or screen-reader user needs of a page:
// every field has a label, every control is reachable with Tab (a link, a
// button or a field, none taken out of the tab order).
func labelled(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	bad := js[[]string](t, ctx, `Array.from(document.querySelectorAll("main input, main select, main button, main a"))
		.filter((el) => (el.matches("input, select") && el.labels.length === 0 && !el.getAttribute("aria-label")) || el.tabIndex < 0)
		.map((el) => el.outerHTML.slice(0, 80))`)
	if len(bad) > 0 {
		t.Errorf("%s: controls without a label or out of the tab order: %v", page, bad)
	}
}

// onlyGateway fails the test on any request the page makes to anywhere
// but the gateway: the console loads nothing from the internet.
func onlyGateway(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	var mu sync.Mutex
	var strays []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			u := e.Request.URL
			if u != base && !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
				mu.Lock()
				strays = append(strays, u)
				mu.Unlock()
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if len(strays) > 0 {
			t.Errorf("the console requested what is not the gateway's: %v", strays)
		}
	})
}

// noSidewaysScroll fails when the page is wider than the window.
func noSidewaysScroll(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	if wide := js[string](t, ctx, `(() => {
		if (document.documentElement.scrollWidth <= window.innerWidth + 1) return "";
		const over = Array.from(document.querySelectorAll("body *")).filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1);
		return document.documentElement.scrollWidth + " > " + window.innerWidth + ": " + over.slice(0, 5).map((el) => el.tagName + "." + el.className + "#" + el.id).join(", ");
	})()`); wide != "" {
		t.Errorf("%s scrolls sideways at phone width: %s", page, wide)
	}
}

// tabTo presses Tab until the focused element matches selector.
func tabTo(t *testing.T, ctx context.Context, selector string) {
	t.Helper()
	for range 60 {
		if js[bool](t, ctx, fmt.Sprintf(`document.activeElement !== null && document.activeElement.matches(%q)`, selector)) {
			return
		}
		run(t, ctx, "Tab", chromedp.KeyEvent(kb.Tab))
	}
	t.Fatalf("Tab never reached %s (at %s)", selector, js[string](t, ctx, `document.activeElement.outerHTML.slice(0, 80)`))
}

// poll waits until the expression holds, failing with what the page shows.
func poll(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	run(t, ctx, what, void(chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(40*time.Second))))
}

// jobState is what the job page's state badge says.
const jobState = `document.querySelector("#job-state [data-state]").dataset.state`

// A person signs in, runs a command from its form, watches its output and
// state change live, reads the job's facts, cancels a sleeping job with the
// keyboard and finds it in the audit search; the jobs list changes a row's
// state while it is open. Nothing is loaded from anywhere but the gateway,
// and no page scrolls sideways at a phone's width.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{audit: true})
	ctx := browser(t)
	onlyGateway(t, ctx, f.url)
	q := f.env.Queue

	run(t, ctx, "sign in with the keyboard",
		chromedp.Navigate(f.url+"/#/signin"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
	shot(t, ctx, "01-signin")
	run(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.CSS("#token"), aliceToken+"\r"),
		chromedp.WaitVisible(chromedp.CSS(`nav.tree a[href="#/run/gw.form"]`)),
		void(chromedp.Poll[bool](`document.getElementById("who").textContent.includes("alice")`)),
	)
	run(t, ctx, "open the form of gw.form",
		chromedp.Click(chromedp.CSS(`nav.tree a[href="#/run/gw.form"]`)),
		chromedp.WaitVisible(chromedp.CSS("#p-name")),
	)
	// The form follows the manifest: an enum is a select with its default,
	// a secret a password field, a number its bounds.
	levelTag := js[string](t, ctx, `document.getElementById("p-level").tagName`)
	passType := js[string](t, ctx, `document.getElementById("p-password").type`)
	countMax := js[string](t, ctx, `document.getElementById("p-count").max`)
	countVal := js[string](t, ctx, `document.getElementById("p-count").value`)
	levelVal := js[string](t, ctx, `document.getElementById("p-level").value`)
	if levelTag != "SELECT" || passType != "password" || countMax != "9" || countVal != "2" || levelVal != "low" {
		t.Fatalf("form: level %s (%s), password %s, count max %s value %s", levelTag, levelVal, passType, countMax, countVal)
	}
	run(t, ctx, "fill the form",
		chromedp.SendKeys(chromedp.CSS("#p-name"), "zed"),
		chromedp.SetValue(chromedp.CSS("#p-level"), "high"),
		chromedp.SetValue(chromedp.CSS("#p-count"), "3"),
		chromedp.SendKeys(chromedp.CSS("#p-password"), "hunter2"),
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SendKeys(chromedp.CSS("#run-queue"), q),
	)
	shot(t, ctx, "02-run-form")
	labelled(t, ctx, "the run form")
	run(t, ctx, "submit, and see the output and the state reach succeeded",
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="succeeded"]`)),
	)
	stdout := get(t, ctx, chromedp.TextContent(chromedp.CSS("#stdout")))
	stderr := get(t, ctx, chromedp.TextContent(chromedp.CSS("#stderr")))
	jobURL := get(t, ctx, chromedp.Location())
	params := get(t, ctx, chromedp.TextContent(chromedp.CSS("table tbody")))
	if strings.Count(stdout, "hello zed (high)") != 3 || strings.TrimSpace(stderr) != "to stderr" || strings.Contains(params, "hunter2") || !strings.Contains(params, "***") {
		t.Fatalf("stdout %q, stderr %q, params %q", stdout, stderr, params)
	}
	// The job's facts are the job's: exit code, duration, worker, where it
	// ran and the module's commit.
	formJob := jobURL[strings.LastIndex(jobURL, "/")+1:]
	st, err := f.env.Client.Status(t.Context(), formJob)
	if err != nil {
		t.Fatal(err)
	}
	image := ""
	for _, ev := range f.replay(formJob) {
		if ev.Event.Kind == schema.KindStarted {
			image = ev.Event.Image // none with the process executor
		}
	}
	poll(t, ctx, "the facts filled in", `document.querySelector('[data-fact="worker"]').textContent !== ""`)
	facts := js[map[string]string](t, ctx, `Object.fromEntries(Array.from(document.querySelectorAll("[data-fact]")).map((el) => [el.dataset.fact, el.textContent]))`)
	if facts["exit"] != "0" || !regexp.MustCompile(`^\d+(\.\d)? (ms|s)$`).MatchString(facts["duration"]) || st.Worker == "" || facts["worker"] != st.Worker ||
		facts["commit"] != gwCommit || facts["executor"] != "process" || facts["image"] != image || facts["command"] != "gw.form" || facts["principal"] != "alice" {
		t.Fatalf("facts %v; the job is %+v", facts, st)
	}
	shot(t, ctx, "03-job-succeeded")

	// Live: the output of a chatty job appears while it runs, and its state
	// turns to succeeded, without a reload.
	run(t, ctx, "run a chatty job",
		chromedp.Navigate(f.url+"/#/run/gw.chatty"),
		chromedp.WaitVisible(chromedp.CSS("#p-count")),
		chromedp.SendKeys(chromedp.CSS("#p-count"), "30"),
		chromedp.SetValue(chromedp.CSS("#p-pause"), "0.2"),
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SendKeys(chromedp.CSS("#run-queue"), q),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#stdout")),
	)
	js[bool](t, ctx, `window.sameDocument = true`)
	poll(t, ctx, "output while it runs", jobState+` === "running" && document.getElementById("stdout").textContent.includes("line 3\n")`)
	shot(t, ctx, "04-job-live")
	if js[bool](t, ctx, `document.getElementById("stdout").textContent.includes("line 30\n")`) {
		t.Fatal("the whole output was there while the job ran")
	}
	poll(t, ctx, "the state reaches succeeded in the same page", jobState+` === "succeeded" && window.sameDocument === true`)
	if out := get(t, ctx, chromedp.TextContent(chromedp.CSS("#stdout"))); strings.Count(out, "\n") != 30 || !strings.HasSuffix(out, "line 30\n") {
		t.Fatalf("the chatty job's stdout: %q", out)
	}

	// The keyboard alone: Tab to a command, Enter opens its form; fill it,
	// Enter submits; Tab to Cancel, Enter cancels.
	run(t, ctx, "the run page", chromedp.Navigate(f.url+"/#/run"), chromedp.WaitVisible(chromedp.CSS(`nav.tree a[href="#/run/core.sleep"]`)))
	tabTo(t, ctx, `nav.tree a[href="#/run/core.sleep"]`)
	run(t, ctx, "Enter opens the form", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("#p-seconds")))
	tabTo(t, ctx, "#p-seconds")
	run(t, ctx, "type the seconds", chromedp.KeyEvent("30"))
	tabTo(t, ctx, "details summary")
	run(t, ctx, "Enter opens the queue and timeout", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("#run-queue")))
	tabTo(t, ctx, "#run-queue")
	run(t, ctx, "type the queue, Enter submits", chromedp.KeyEvent(q), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="running"]`)))
	sleeper := get(t, ctx, chromedp.TextContent(chromedp.CSS(".jobhead h1")))
	shot(t, ctx, "05-job-running")
	tabTo(t, ctx, "#cancel")
	run(t, ctx, "Enter on Cancel cancels it", chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="cancelled"]`)),
		chromedp.WaitNotVisible(chromedp.CSS("#cancel")),
	)
	shot(t, ctx, "06-job-cancelled")

	run(t, ctx, "the jobs list, filtered",
		chromedp.Navigate(f.url+"/#/jobs?queue="+q),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#jobs tr[data-job=%q] [data-state="cancelled"]`, sleeper))),
		chromedp.WaitVisible(chromedp.CSS(".chart svg rect")),
	)
	shot(t, ctx, "07-jobs")
	labelled(t, ctx, "the jobs page")
	// A job submitted while the list is open shows up, runs and succeeds
	// in it, without a reload.
	js[bool](t, ctx, `window.sameDocument = true`)
	live := f.submit(bobToken, "gw.chatty", map[string]any{"count": 30, "pause": 0.2})
	row := fmt.Sprintf(`document.querySelector('#jobs tr[data-job=%q] [data-state]')`, live)
	poll(t, ctx, "the new job running in the list", row+` !== null && `+row+`.dataset.state === "running"`)
	poll(t, ctx, "the new job succeeded in the list", row+`.dataset.state === "succeeded" && window.sameDocument === true`)

	found := false
	for deadline := time.Now().Add(30 * time.Second); !found && time.Now().Before(deadline); {
		run(t, ctx, "search the audit",
			chromedp.Navigate(f.url+"/#/audit?status=cancelled&queue="+q+"&since=1h"),
			chromedp.Reload(),
			chromedp.WaitVisible(chromedp.CSS("#a-status")),
			void(chromedp.Poll[bool](`document.querySelector('#audit').parentElement.parentElement.previousElementSibling.textContent !== ""`)),
		)
		found = js[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('#audit tr[data-job=%q]').length`, sleeper)) == 1
	}
	if !found {
		t.Fatal("the cancelled job is not in the audit search")
	}
	shot(t, ctx, "08-audit")
	labelled(t, ctx, "the audit page")
	run(t, ctx, "from the audit to the job page",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#audit tr[data-job=%q] a`, sleeper))),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="cancelled"]`)),
	)

	// A phone's width: every page, one column, nothing wider than the screen.
	run(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	for _, p := range []struct{ name, url, ready string }{
		{"signin", "/#/signin", "#token"},
		{"run", "/#/run/gw.form", "#p-name"},
		{"job", jobURL[len(f.url):], `#job-state [data-state="succeeded"]`},
		{"jobs", "/#/jobs?queue=" + q, "#jobs tr"},
		{"audit", "/#/audit?queue=" + q + "&since=1h", "#audit tr"},
	} {
		run(t, ctx, "phone "+p.name, chromedp.Navigate(f.url+p.url), chromedp.WaitVisible(chromedp.CSS(p.ready)))
		noSidewaysScroll(t, ctx, "the "+p.name+" page")
		shot(t, ctx, "09-phone-"+p.name)
	}
}

// A person whose organisation has an OpenID Connect issuer signs in to the
// console by pasting an ID token from it; a job run then is theirs. An
// expired one is refused with the gateway's reason.
func TestConsoleSignInWithOIDC(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	f := newFixture(t, options{edit: func(c *gateway.Config) {
		c.OIDC = &gateway.OIDCConfig{Issuer: iss.srv.URL, Audience: "winch", PrincipalClaim: "preferred_username"}
	}})
	ctx := browser(t)
	onlyGateway(t, ctx, f.url)
	expired := iss.token(t, iss.key, map[string]any{"preferred_username": "olivia", "exp": time.Now().Add(-time.Hour).Unix()})
	run(t, ctx, "paste an expired ID token",
		chromedp.Navigate(f.url+"/#/signin"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SetValue(chromedp.CSS("#token"), expired),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".signin .problem")),
	)
	if msg := get(t, ctx, chromedp.TextContent(chromedp.CSS(".signin .problem"))); !strings.Contains(msg, "expired") {
		t.Errorf("an expired ID token: %q", msg)
	}
	good := iss.token(t, iss.key, map[string]any{"sub": "u-1", "preferred_username": "olivia", "roles": []string{"dba"}})
	run(t, ctx, "paste a good one",
		chromedp.SetValue(chromedp.CSS("#token"), good),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.tree a[href="#/run/core.echo"]`)),
		void(chromedp.Poll[bool](`document.getElementById("who").textContent === "olivia (dba)"`)),
	)
	if js[bool](t, ctx, `!document.getElementById("toast").hidden`) {
		t.Errorf("signed in, the page still shows %q", get(t, ctx, chromedp.TextContent(chromedp.CSS("#toast"))))
	}
	shot(t, ctx, "01-signed-in")
	run(t, ctx, "run core.echo as olivia",
		chromedp.Navigate(f.url+"/#/run/core.echo"),
		chromedp.WaitVisible(chromedp.CSS("#p-text")),
		chromedp.SendKeys(chromedp.CSS("#p-text"), "from the console"),
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SendKeys(chromedp.CSS("#run-queue"), f.env.Queue),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="succeeded"]`)),
	)
	if who := get(t, ctx, chromedp.TextContent(chromedp.CSS(`[data-fact="principal"]`))); who != "olivia" {
		t.Fatalf("the job's principal: %q", who)
	}
}
