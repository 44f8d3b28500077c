// Package ui tests the dashboard a node serves at /ui/ in a real browser: headless Chromium,
// driven over the DevTools protocol by chromedp, against nodes in the test process. It is a
// package of its own so that only it links chromedp. Its tests skip when no Chromium binary is
// found (.ci/run installs Debian's chromium); write the README's screenshot with
//
//	go test ./test/ui -run '^TestDashboard$/^FollowsTheMap$' -args -screenshot=$PWD/docs/dashboard.png
package ui

import (
	"os"
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }
