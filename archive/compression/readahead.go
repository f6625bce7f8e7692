package compression

import (
	"errors"
	"io"
	"sync"
)

// A readahead reader decompresses in its own goroutine, up to raChunks
// chunks ahead of its consumer, so that inflating (one core) and unpacking
// (another core, mostly syscalls) run at the same time instead of taking
// turns. Buffers circulate between two channels and are never reallocated.
const (
	raChunkSize = 512 << 10
	raChunks    = 4
)

var errReadaheadClosed = errors.New("read from closed decompression stream")

type chunk struct {
	b   []byte
	err error
}

type readahead struct {
	filled chan chunk
	free   chan []byte
	done   chan struct{}
	once   sync.Once

	buf []byte // the chunk being consumed, handed back when drained
	cur []byte // its unread tail
	err error  // the producer's final error, sticky
}

// newReadahead starts decompressing src. The producer goroutine owns src
// and closes it when it stops, so src is never used from two goroutines.
func newReadahead(src io.ReadCloser) *readahead {
	ra := &readahead{
		filled: make(chan chunk, raChunks),
		free:   make(chan []byte, raChunks),
		done:   make(chan struct{}),
	}
	for range raChunks {
		ra.free <- make([]byte, raChunkSize)
	}
	go ra.produce(src)
	return ra
}

func (ra *readahead) produce(src io.ReadCloser) {
	defer src.Close()
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.done:
			return
		}
		n, err := fill(src, buf)
		select {
		case ra.filled <- chunk{b: buf[:n], err: err}:
		case <-ra.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// fill reads until buf is full or src fails. Unlike io.ReadFull it passes
// src's error through untouched: a truncated gzip stream reports
// io.ErrUnexpectedEOF itself and that must not turn into a clean io.EOF.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Read returns decompressed bytes; like any io.Reader it is not safe for
// concurrent use.
func (ra *readahead) Read(p []byte) (int, error) {
	select {
	case <-ra.done:
		return 0, errReadaheadClosed
	default:
	}
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)] // never blocks: raChunks slots
			ra.buf = nil
		}
		select {
		case c := <-ra.filled:
			ra.buf, ra.cur, ra.err = c.b, c.b, c.err
		case <-ra.done:
			return 0, errReadaheadClosed
		}
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the producer. It does not wait for it: the producer may be
// blocked reading the network, and it closes the decompressor itself.
func (ra *readahead) Close() error {
	ra.once.Do(func() { close(ra.done) })
	return nil
}
