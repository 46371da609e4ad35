import { describe, expect, it } from '@jest/globals';
import { parseLatencyTable } from './latency-table.js';
import { FleetSpecError } from './spec-parse.js';

function error(text: string): FleetSpecError {
  try {
    parseLatencyTable(text, 'latency.yaml');
  } catch (e) {
    if (e instanceof FleetSpecError) return e;
    throw e;
  }
  throw new Error('expected a FleetSpecError');
}

describe('parseLatencyTable', () => {
  it('reads YAML and JSON maps of region -> region -> ms', () => {
    const yaml = 'eu-west:\n  us-east: 80\n  ap-south: 140.5\nus-east: { ap-south: 200 }\n';
    expect(parseLatencyTable(yaml, 'latency.yaml')).toEqual({
      'eu-west': { 'us-east': 80, 'ap-south': 140.5 },
      'us-east': { 'ap-south': 200 },
    });
    expect(parseLatencyTable('{"a": {"b": 5}}', 'latency.json')).toEqual({ a: { b: 5 } });
  });

  it('names the file, line and field of a bad entry', () => {
    const e = error('eu-west:\n  us-east: 80\n  ap-south: fast\n');
    expect(e.message).toBe('latency.yaml:3:13: eu-west.ap-south: must be milliseconds from 0 to 600000 (got "fast")');
    expect(error('eu-west:\n  us-east: -1\n').path).toBe('eu-west.us-east');
    expect(error('eu-west: 80\n').message).toContain('eu-west: must be a map of region -> milliseconds (got 80)');
    expect(error('"bad region!": {}\n').message).toContain('is not a region name');
    expect(error('- a\n- b\n').message).toContain('must be a map of region -> region -> milliseconds');
    expect(error('').message).toBe('latency.yaml: expected one document, found 0');
    expect(error('a: {b: 1\n').message).toMatch(/^latency\.yaml:\d+:\d+: invalid YAML/);
  });
});
