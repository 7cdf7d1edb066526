// A small in-memory EventStore for the SDK's StreamableHTTPServerTransport
// (resumability). One store per session; bounded so long benchmarks do not
// grow without limit. Event ids are "<streamId>.<seq>" with a per-store seq.
export class MemoryEventStore {
    constructor(limit = 2000) {
        this.limit = limit;
        this.seq = 0;
        this.events = new Map(); // eventId -> {streamId, message}
    }

    async storeEvent(streamId, message) {
        const eventId = `${streamId}.${++this.seq}`;
        this.events.set(eventId, { streamId, message });
        if (this.events.size > this.limit) this.events.delete(this.events.keys().next().value);
        return eventId;
    }

    async getStreamIdForEventId(eventId) {
        return this.events.get(eventId)?.streamId;
    }

    async replayEventsAfter(lastEventId, { send }) {
        const rec = this.events.get(lastEventId);
        if (!rec) return '';
        let after = false;
        for (const [id, ev] of this.events) {
            if (id === lastEventId) { after = true; continue; }
            if (!after || ev.streamId !== rec.streamId) continue;
            if (!ev.message || !ev.message.jsonrpc) continue; // priming events carry no message
            await send(id, ev.message);
        }
        return rec.streamId;
    }
}
