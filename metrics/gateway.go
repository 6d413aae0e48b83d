package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Gateway is what the HTTP gateway measures of the requests it serves. A
// nil *Gateway measures nothing.
type Gateway struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	streams  prometheus.Gauge
}

// NewGateway registers the gateway's collectors on reg.
func NewGateway(reg prometheus.Registerer) *Gateway {
	g := &Gateway{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "winch_gateway_requests_total",
			Help: "API requests answered, by route (the pattern, so ids do not multiply series) and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "winch_gateway_request_seconds",
			Help:    "From an API request's arrival to its answer, by route; for an event stream, how long it stayed open.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms to about 4 min
		}, []string{"route"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "winch_gateway_event_streams",
			Help: "Server-sent event streams open now.",
		}),
	}
	reg.MustRegister(g.requests, g.latency, g.streams)
	return g
}

// Request records an answered request.
func (g *Gateway) Request(route string, code int, took time.Duration) {
	if g != nil {
		g.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		g.latency.WithLabelValues(route).Observe(took.Seconds())
	}
}

// Streams counts an event stream opened (+1) or closed (-1).
func (g *Gateway) Streams(delta int) {
	if g != nil {
		g.streams.Add(float64(delta))
	}
}
