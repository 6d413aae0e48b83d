// Package metrics is what winch's processes expose to an operator and an
// autoscaler: Prometheus metrics, and health and readiness endpoints
// (WINCH_METRICS_ADDR). Each process registers the collectors of what it
// does on a registry of its own (no global registry: tests run several).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Worker is what a worker measures of the jobs it runs. A nil *Worker
// measures nothing, so that code that runs jobs need not ask.
type Worker struct {
	finished   *prometheus.CounterVec
	runTime    *prometheus.HistogramVec
	startDelay *prometheus.HistogramVec
	running    prometheus.Gauge
	slots      prometheus.Gauge
	published  *prometheus.CounterVec
	pending    *prometheus.GaugeVec
	create     prometheus.Histogram
	start      prometheus.Histogram
}

// NewWorker registers a worker's collectors, and the Go runtime's and the
// process's, on reg.
func NewWorker(reg prometheus.Registerer) *Worker {
	w := &Worker{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "winch_jobs_finished_total",
			Help: "Jobs this worker ran to an end, by command, queue and final state.",
		}, []string{"command", "queue", "state"}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "winch_job_run_seconds",
			Help:    "From the command's start to its end, by command.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms to about 44 min
		}, []string{"command"}),
		startDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "winch_job_start_delay_seconds",
			Help:    "From the request's creation to the command's start (queueing, claim, image, container), by queue.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms to about 4 min
		}, []string{"queue"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "winch_jobs_running",
			Help: "Jobs this worker holds now.",
		}),
		slots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "winch_worker_slots",
			Help: "Jobs this worker may run at once (its concurrency).",
		}),
	}
	w.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "winch_events_published_total",
		Help: "Events this worker published to the events stream, by kind.",
	}, []string{"kind"})
	w.pending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "winch_queue_pending",
		Help: "Requests waiting in a queue's consumer (not yet delivered to any worker), by queue and priority, as this worker last read them (every few seconds): every worker of a queue reports the same number, so take max, not sum.",
	}, []string{"queue", "priority"})
	containerBuckets := prometheus.ExponentialBuckets(0.005, 2, 12) // 5 ms to about 10 s
	w.create = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "winch_container_create_seconds",
		Help:    "Time the container engine took to create a job's container.",
		Buckets: containerBuckets,
	})
	w.start = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "winch_container_start_seconds",
		Help:    "Time the container engine took to start a job's container, once created.",
		Buckets: containerBuckets,
	})
	reg.MustRegister(w.finished, w.runTime, w.startDelay, w.running, w.slots, w.published, w.pending, w.create, w.start)
	return w
}

// EventPublished counts an event handed to the events stream.
func (w *Worker) EventPublished(kind string) {
	if w != nil {
		w.published.WithLabelValues(kind).Inc()
	}
}

// Pending records how many requests wait in a queue's consumer.
func (w *Worker) Pending(queue, priority string, n uint64) {
	if w != nil {
		w.pending.WithLabelValues(queue, priority).Set(float64(n))
	}
}

// ContainerCreated records how long a container's creation took.
func (w *Worker) ContainerCreated(took time.Duration) {
	if w != nil {
		w.create.Observe(took.Seconds())
	}
}

// ContainerStarted records how long a container's start took.
func (w *Worker) ContainerStarted(took time.Duration) {
	if w != nil {
		w.start.Observe(took.Seconds())
	}
}

// Process registers the Go runtime's and the process's collectors on reg.
func Process(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Slots records the worker's concurrency.
func (w *Worker) Slots(n int) {
	if w != nil {
		w.slots.Set(float64(n))
	}
}

// Holding counts a job taken (+1) or let go (-1).
func (w *Worker) Holding(delta int) {
	if w != nil {
		w.running.Add(float64(delta))
	}
}

// Started records that a job's command started, created at created.
func (w *Worker) Started(queue string, created, now time.Time) {
	if w != nil && !created.IsZero() {
		w.startDelay.WithLabelValues(queue).Observe(now.Sub(created).Seconds())
	}
}

// Finished records a job's end; started is zero for a command that never
// started.
func (w *Worker) Finished(command, queue, state string, started, now time.Time) {
	if w == nil {
		return
	}
	w.finished.WithLabelValues(command, queue, state).Inc()
	if !started.IsZero() {
		w.runTime.WithLabelValues(command).Observe(now.Sub(started).Seconds())
	}
}

// Sink is what an audit sink measures of its inserts into ClickHouse. A nil
// *Sink measures nothing.
type Sink struct {
	events   prometheus.Counter
	batch    prometheus.Histogram
	insert   prometheus.Histogram
	failures prometheus.Counter
	pending  prometheus.Gauge
	dead     prometheus.Counter
}

// NewSink registers a sink's collectors on reg.
func NewSink(reg prometheus.Registerer) *Sink {
	s := &Sink{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "winch_sink_events_stored_total",
			Help: "Events this sink inserted into ClickHouse.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "winch_sink_batch_events",
			Help:    "Events per insert.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1 to 16,384
		}),
		insert: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "winch_sink_insert_seconds",
			Help:    "Time of one successful insert.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1 ms to about 1 min
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "winch_sink_insert_failures_total",
			Help: "Inserts ClickHouse refused or did not answer (each is retried).",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "winch_sink_pending_events",
			Help: "Events in the stream not yet delivered to the sinks (their lag), as last read.",
		}),
	}
	s.dead = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "winch_sink_dead_letters_total",
		Help: "Events ClickHouse refused for what they hold, kept in the dead_letters table instead.",
	})
	reg.MustRegister(s.events, s.batch, s.insert, s.failures, s.pending, s.dead)
	return s
}

// Inserted records a batch ClickHouse took, and how long that took.
func (s *Sink) Inserted(events int, took time.Duration) {
	if s != nil {
		s.events.Add(float64(events))
		s.batch.Observe(float64(events))
		s.insert.Observe(took.Seconds())
	}
}

// InsertFailed records an insert that will be retried.
func (s *Sink) InsertFailed() {
	if s != nil {
		s.failures.Inc()
	}
}

// DeadLettered records an event put in the dead letters.
func (s *Sink) DeadLettered() {
	if s != nil {
		s.dead.Inc()
	}
}

// Pending records the sinks' lag.
func (s *Sink) Pending(n uint64) {
	if s != nil {
		s.pending.Set(float64(n))
	}
}
