package main

// Output: every command builds one document, which is printed as indented JSON with -o json
// or as aligned text by the command's table function.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// render writes doc to the command's output: as JSON with -o json, else with table.
func render[T any](cmd *cobra.Command, g *globals, doc T, table func(w io.Writer, doc T)) error {
	out := cmd.OutOrStdout()
	if g.jsonOutput() {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(tw, doc)
	return tw.Flush()
}

// action wraps a command's work: an error that carries no exit status is a failure of the
// cluster's state (exitState), not of the command line.
func action(fn func(cmd *cobra.Command, args []string) error) func(cmd *cobra.Command, args []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		var ee *exitError
		if err != nil && !errors.As(err, &ee) {
			err = &exitError{status: exitState, err: err}
		}
		return err
	}
}

// args checks the number of arguments, as a usage error.
func args(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("want %s, got %d arguments", names, len(args))
		}
		return nil
	}
}

// list prints ids comma-separated, "-" for none.
func list(ids []string) string {
	if len(ids) == 0 {
		return "-"
	}
	return strings.Join(ids, ",")
}

// orDash prints s, "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cause prints why a map was published: "join node-4".
func cause(c state.Cause) string {
	if len(c.Nodes) == 0 {
		return c.Reason
	}
	return c.Reason + " " + strings.Join(c.Nodes, ",")
}

// causeWord prints why a map was published as one word, for lines and table columns:
// "join:node-4".
func causeWord(c state.Cause) string {
	if len(c.Nodes) == 0 {
		return c.Reason
	}
	return c.Reason + ":" + strings.Join(c.Nodes, ",")
}

// ago prints how long before now t was, to the tenth of a second.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(100*time.Millisecond).String() + " ago"
}

// size prints a byte count in the units of etcdctl's endpoint status: "25 kB", "1.2 MB".
func size(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// weight prints a node's weight: 0 in a record from before weights is 1.
func weight(w int) int { return max(w, 1) }
