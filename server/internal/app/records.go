package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/shared/event"
)

// recordStore is the event store as the admin plane sees it (API, web UI,
// notification settings, incidents, report exports). Only the writer may
// append, yet admins may use any server: on a standby, the record of an
// action done there is sent to the writer (api.PathPeerRecords) instead of
// failing the epoch check and being lost.
type recordStore struct {
	eventStore
	s *Server
}

func (r recordStore) AppendServer(ctx context.Context, e event.Event) (event.Event, error) {
	return r.s.appendRecord(ctx, e)
}

// peerClient is the HTTPS client a standby sends records with: it trusts
// the site's CA and presents this node's peer certificate.
type peerClient struct {
	once   sync.Once
	client *http.Client
	err    error
}

func (s *Server) peerHTTP() (*http.Client, error) {
	p := &s.peer
	p.once.Do(func() {
		cert, err := s.ca.PeerCert(strings.TrimPrefix(s.NodeURL(), "https://"))
		if err != nil {
			p.err = fmt.Errorf("app: %w", err)
			return
		}
		p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: s.ca.Pool(), Certificates: []tls.Certificate{cert}},
			ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute,
		}}
	})
	return p.client, p.err
}

// appendRecord appends e on the writer, here or by sending it there; it
// retries while no writer is known or the writer changes, until ctx ends.
// The same Idempotency-Key on every try makes the writer append it once.
func (s *Server) appendRecord(ctx context.Context, e event.Event) (event.Event, error) {
	var key [16]byte
	_, _ = rand.Read(key[:])
	var body []byte
	wait := 200 * time.Millisecond
	var last error
	for {
		self, url := s.writerInfo()
		if self {
			e, err := s.store.AppendServer(ctx, e)
			return e, notWriter(err)
		}
		if url != "" {
			if body == nil {
				var err error
				if body, err = json.Marshal(e); err != nil {
					return event.Event{}, fmt.Errorf("app: record: %w", err)
				}
			}
			stored, retry, err := s.sendRecord(ctx, url, hex.EncodeToString(key[:]), body)
			if err == nil {
				return stored, nil
			}
			if !retry {
				return event.Event{}, err
			}
			last = err
		} else {
			last = errors.New("no writer elected yet")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return event.Event{}, fmt.Errorf("app: record not sent to the writer: %w (last try: %v)", ctx.Err(), last)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// sendRecord posts one record to the writer at url; retry says whether
// another try may succeed (network trouble, a writer that stepped down).
func (s *Server) sendRecord(ctx context.Context, url, key string, body []byte) (stored event.Event, retry bool, err error) {
	client, err := s.peerHTTP()
	if err != nil {
		return event.Event{}, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(url, "/")+api.PathPeerRecords, bytes.NewReader(body))
	if err != nil {
		return event.Event{}, false, fmt.Errorf("app: record: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return event.Event{}, true, fmt.Errorf("app: send record to the writer %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return event.Event{}, true, fmt.Errorf("app: record answer from %s: %w", url, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(msg, &stored); err != nil {
			return event.Event{}, true, fmt.Errorf("app: record answer from %s: %w", url, err)
		}
		return stored, false, nil
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode >= 500:
		return event.Event{}, true, fmt.Errorf("app: writer %s answered %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	default:
		return event.Event{}, false, fmt.Errorf("app: writer %s refused the record: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
}
