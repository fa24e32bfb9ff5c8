package api

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// indexLagger is a store whose query indexes trail the log (SQLite's).
type indexLagger interface {
	IndexLag() (events int64, runs int)
}

type metrics struct {
	reg         *prometheus.Registry
	ingested    prometheus.Counter
	duplicates  prometheus.Counter
	rejected    *prometheus.CounterVec
	acked       *prometheus.CounterVec
	ackLatency  prometheus.Histogram
	enrollments prometheus.Counter
}

// newMetrics registers on a registry of the server's own, so that several
// servers (tests) can live in one process.
func newMetrics(extra prometheus.Registerer, store EventStore) (*metrics, error) {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		ingested: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mamori_events_ingested_total", Help: "Agent events stored (duplicates excluded).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mamori_events_duplicate_total", Help: "Agent events received again and already stored.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mamori_batches_rejected_total", Help: "Agent batches refused, by HTTP status.",
		}, []string{"code"}),
		acked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mamori_batches_acked_total",
			Help: "Agent batches acked, by Content-Encoding: gzip is agents from before zstd, or behind something that strips Accept-Encoding.",
		}, []string{"encoding"}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mamori_batch_ack_seconds",
			Help:    "Time from receiving a batch request to acking it (decode, checks, durable commit).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		enrollments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mamori_enrollments_total", Help: "Agents enrolled.",
		}),
	}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mamori_store_tree_size", Help: "Entries in the server's Merkle log (all stored events).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := store.TreeSize(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	cs := []prometheus.Collector{m.ingested, m.duplicates, m.rejected, m.acked, m.ackLatency, m.enrollments, size}
	if il, ok := store.(indexLagger); ok {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mamori_store_index_lag_events",
			Help: "Stored events not yet in the query indexes: queries scan them. Growing means the indexer cannot keep up.",
		}, func() float64 { n, _ := il.IndexLag(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mamori_store_index_runs", Help: "Tables holding the query indexes (merged as they grow); each query on a key reads each.",
			}, func() float64 { _, r := il.IndexLag(); return float64(r) }))
	}
	own := len(cs)
	cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	if extra != nil {
		for _, c := range cs[:own] {
			if err := extra.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
