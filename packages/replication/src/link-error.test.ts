import { describe, expect, it } from 'vitest';
import { linkErrorMessage } from './link';

describe('a link error in words', () => {
  it('says that a peer certificate "not yet valid" means this clock is behind, not a lost link', () => {
    // Seen with a replica 5 min behind its primary, paired a minute after `init node`: the
    // status said "LINK_CLOSED: link error: certificate is not yet valid (hint: ... replication
    // resumes when it is back)", and it did not for 4 minutes, with nothing about the clocks.
    const err = Object.assign(new Error('certificate is not yet valid'), { code: 'CERT_NOT_YET_VALID' });
    const m = linkErrorMessage(err, Date.parse('2026-12-07T20:34:04Z'));
    expect(m).toContain('link error: certificate is not yet valid');
    expect(m).toContain("this clock is behind the peer's");
    expect(m).toContain('2026-12-07T20:34:04.000Z');
    expect(m).toContain('NTP');
    const expired = Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' });
    expect(linkErrorMessage(expired)).toContain("the peer's certificate has expired");
    // A peer that made itself a new key and certificate (init node again): the pin no longer
    // matches, and no retry will fix it ("self-signed certificate", "resumes when it is back").
    const repinned = linkErrorMessage(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }));
    expect(repinned).toContain("the peer's certificate is not the one this node trusts for it");
    expect(repinned).toContain('headstart pair');
    expect(linkErrorMessage(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toBe('link error: connect ECONNREFUSED 127.0.0.1:1');
  });
});
