package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// watchLine is one published map, as clusterkit watch prints it.
type watchLine struct {
	Epoch     uint64      `json:"epoch"`
	UpdatedAt time.Time   `json:"updated_at"`
	Cause     state.Cause `json:"cause"`
	Leader    string      `json:"leader"`
	Nodes     []string    `json:"nodes"`
	Pending   int         `json:"pending"`
	// Revision is the etcd revision the map was written at.
	Revision int64 `json:"revision"`
}

func newWatch(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch",
		Short: "Print one line per published map, until interrupted",
		Long: `Print the current map, then one line for every map the leader publishes, as it is
published, until interrupted (Ctrl-C, SIGTERM; the exit status is then 0): its epoch,
when and why it was published (the cause and the nodes it concerns), the leader that
wrote it, its nodes, and the copies it waits for. It follows the map as the nodes do:
a watch that asks etcd's leader, resumes after a break from the last revision it saw,
and reads each map whole at its revision.

  epoch=6 updated_at=2026-11-29T22:35:34.722Z cause=join:node-4 leader=node-1 nodes=node-1,node-2,node-3,node-4 pending=48

With -o json, one JSON object per line:
  {"epoch":6,"updated_at":"2026-11-29T22:35:34.722Z","cause":{"reason":"join","nodes":["node-4"]},
   "leader":"node-1","nodes":["node-1","node-2","node-3","node-4"],"pending":48,"revision":97}`,
		Args: args(0, "no argument"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			s, err := g.open(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			// A line that cannot be written (a closed pipe, a full disk) ends the watch.
			var werr error
			show := func(m *state.Map, rev int64) {
				if werr == nil {
					if werr = g.printWatchLine(out, m, rev); werr != nil {
						stop()
					}
				}
			}
			f := &follow.Map{
				Client: s.cli, Schema: s.schema, Log: warnLogger(stderr), ReadTimeout: g.commandTimeout,
				Apply: func(u follow.Update) { show(u.Map, u.Revision) },
				Broken: func(rev int64, err error) {
					fmt.Fprintf(stderr, "clusterkit: the map written at revision %d cannot be read: %v\n", rev, err)
				},
			}
			r, err := f.Read(ctx)
			if err != nil {
				return s.readError("partition map", err)
			}
			if r.Map != nil {
				show(r.Map, r.ModRevision)
			}
			f.Run(ctx, r.Revision, r.Map)
			if werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
			return nil
		}),
	}
}

func (g *globals) printWatchLine(w io.Writer, m *state.Map, rev int64) error {
	l := watchLine{Epoch: m.Epoch, UpdatedAt: m.UpdatedAt, Cause: m.Cause, Leader: m.Leader, Nodes: m.Members(),
		Pending: nextmap.Pending(m), Revision: rev}
	if g.jsonOutput() {
		return json.NewEncoder(w).Encode(l)
	}
	_, err := fmt.Fprintf(w, "epoch=%d updated_at=%s cause=%s leader=%s nodes=%s pending=%d\n",
		l.Epoch, l.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), causeWord(l.Cause), l.Leader, list(l.Nodes), l.Pending)
	return err
}

// warnLogger writes the watch's warnings (a broken watch resuming) to w, one line each.
func warnLogger(w io.Writer) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zap.WarnLevel))
}
