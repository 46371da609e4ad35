import { describe, expect, it } from '@jest/globals';
import { UsageError } from './args.js';
import { publicUrl } from './gateway-command.js';

describe('publicUrl', () => {
  it('keeps an http(s) base URL, without trailing slashes', () => {
    expect(publicUrl('gateway', 'public-url', 'https://gw.example.com/')).toBe('https://gw.example.com');
    expect(publicUrl('gateway', 'public-url', 'http://10.0.0.1:8090/prefix//')).toBe('http://10.0.0.1:8090/prefix');
  });

  it('refuses anything else, naming the flag', () => {
    for (const [value, why] of [
      ['gw.example.com', /--public-url must be an absolute URL/],
      ['ftp://gw.example.com', /--public-url must be an http:\/\/ or https:\/\/ URL/],
      ['https://gw.example.com/?a=1', /--public-url must not have a query or fragment/],
    ] as const) {
      expect(() => publicUrl('gateway', 'public-url', value)).toThrow(UsageError);
      expect(() => publicUrl('gateway', 'public-url', value)).toThrow(why);
    }
    expect(() => publicUrl('allocator', 'gateway-url', 'nope')).toThrow(/^allocator: --gateway-url/);
  });
});
