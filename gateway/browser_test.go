package gateway_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/winchhq/winch/internal/testenv"
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

// shot saves a full-page screenshot among the test's artifacts (go test
// -artifacts keeps them).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := t.ArtifactDir()
	if d := os.Getenv("WINCH_ARTIFACTS"); d != "" {
		dir = d
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
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

// A person signs in, runs a command from its form, watches its output and
// state live, cancels a sleeping job and finds it in the audit search.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{audit: true})
	ctx := browser(t)
	q := f.env.Queue

	run(t, ctx, "sign in with the keyboard",
		chromedp.Navigate(f.url+"/#/signin"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
	shot(t, ctx, "1-signin")
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
	shot(t, ctx, "2-run-form")
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
	shot(t, ctx, "3-job-succeeded")

	run(t, ctx, "run a sleeping job",
		chromedp.Navigate(f.url+"/#/run/core.sleep"),
		chromedp.WaitVisible(chromedp.CSS("#p-seconds")),
		chromedp.SendKeys(chromedp.CSS("#p-seconds"), "30"),
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SendKeys(chromedp.CSS("#run-queue"), q),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="running"]`)),
	)
	sleeper := get(t, ctx, chromedp.TextContent(chromedp.CSS(".jobhead h1")))
	shot(t, ctx, "4-job-running")
	run(t, ctx, "cancel it",
		chromedp.Click(chromedp.CSS("#cancel")),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="cancelled"]`)),
		chromedp.WaitNotVisible(chromedp.CSS("#cancel")),
	)
	shot(t, ctx, "5-job-cancelled")

	run(t, ctx, "the jobs list, filtered, with live state",
		chromedp.Navigate(f.url+"/#/jobs?queue="+q),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#jobs tr[data-job=%q] [data-state="cancelled"]`, sleeper))),
		chromedp.WaitVisible(chromedp.CSS(".chart svg rect")),
	)
	shot(t, ctx, "6-jobs")
	labelled(t, ctx, "the jobs page")

	found := false
	for deadline := time.Now().Add(30 * time.Second); !found && time.Now().Before(deadline); {
		run(t, ctx, "search the audit",
			chromedp.Navigate(f.url+"/#/audit?status=cancelled&queue="+q+"&since=1h"),
			chromedp.Reload(),
			chromedp.WaitVisible(chromedp.CSS("#a-status")),
			chromedp.Sleep(300*time.Millisecond),
		)
		found = js[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('#audit tr[data-job=%q]').length`, sleeper)) == 1
	}
	if !found {
		t.Fatal("the cancelled job is not in the audit search")
	}
	shot(t, ctx, "7-audit")
	labelled(t, ctx, "the audit page")
	run(t, ctx, "from the audit to the job page",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#audit tr[data-job=%q] a`, sleeper))),
		chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="cancelled"]`)),
	)

	// A phone's width: the same pages, one column.
	run(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(f.url+"/#/run/gw.form"), chromedp.WaitVisible(chromedp.CSS("#p-name")))
	if js[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`) {
		t.Error("the run page scrolls sideways at phone width")
	}
	shot(t, ctx, "8-phone-run")
	run(t, ctx, "phone job page", chromedp.Navigate(jobURL), chromedp.WaitVisible(chromedp.CSS(`#job-state [data-state="succeeded"]`)))
	shot(t, ctx, "9-phone-job")
	run(t, ctx, "phone jobs", chromedp.Navigate(f.url+"/#/jobs?queue="+q), chromedp.WaitVisible(chromedp.CSS(`#jobs tr`)))
	shot(t, ctx, "10-phone-jobs")
}
