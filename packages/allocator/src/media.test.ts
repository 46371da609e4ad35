import { describe, expect, it } from '@jest/globals';
import { mediaEndpoints } from './convert.js';

describe('mediaEndpoints', () => {
  it('builds WHIP, WHEP and RTMP URL templates on the direct address', () => {
    expect(mediaEndpoints('10.0.0.7', { api: 8081, whip_whep: 9000, rtmp: 1935 })).toEqual({
      whipUrlTemplate: 'http://10.0.0.7:9000/whip/{input_id}',
      whepUrlTemplate: 'http://10.0.0.7:9000/whep/{output_id}',
      rtmpUrlTemplate: 'rtmp://10.0.0.7:1935/{input_id}/{stream_key}',
    });
  });

  it('brackets IPv6 addresses and leaves a template empty without its port or an address', () => {
    expect(mediaEndpoints('fd00::7', { api: 8081, whip_whep: 9000, rtmp: 0 })).toEqual({
      whipUrlTemplate: 'http://[fd00::7]:9000/whip/{input_id}',
      whepUrlTemplate: 'http://[fd00::7]:9000/whep/{output_id}',
      rtmpUrlTemplate: '',
    });
    expect(mediaEndpoints('', { api: 8081, whip_whep: 9000, rtmp: 1935 })).toEqual({
      whipUrlTemplate: '',
      whepUrlTemplate: '',
      rtmpUrlTemplate: '',
    });
  });
});
