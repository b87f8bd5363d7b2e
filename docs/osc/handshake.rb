# handshake-score in Sonic Pi: the woodblock and the tin drum, from hs's OSC.
#
#   hs play SCORE --to osc --osc 127.0.0.1:4560 --osc-latency 0 --stretch 10
#
# Paste this into a Sonic Pi buffer and press Run, then start hs. Sonic Pi hears OSC on
# port 4560; it takes plain messages only (Sonic Pi 3.2 drops OSC bundles), which is what
# --osc-latency 0 sends, so each note sounds when it arrives. (Another machine's hs needs
# Preferences > IO > "Receive remote OSC messages".)
#
# Requests knock on a woodblock (a retried SYN lower and softer), responses ring a small
# bell-like tin drum, the completing ACK ticks and a reset crashes: a clean handshake is 1-2-1.
# Each message: /hs/KIND attempt client client_port server server_port delay_ms outcome.

define :hs_pan do |host|
  (host.to_s.sum % 100) / 100.0 * 1.2 - 0.6  # the same host, the same place
end

hs_voices = {
  "syn"           => [:elec_wood, {amp: 1.0}],
  "syn-retry"     => [:elec_wood, {amp: 0.6, rate: 0.85}],
  "syn-ack"       => [:perc_bell, {amp: 0.5, rate: 2, finish: 0.3}],
  "syn-ack-retry" => [:perc_bell, {amp: 0.3, rate: 2, finish: 0.3}],
  "ack"           => [:elec_tick, {amp: 0.8}],
  "rst"           => [:drum_cymbal_hard, {amp: 0.4, finish: 0.3}],
}

hs_voices.each do |kind, (name, opts)|
  live_loop "hs_#{kind}".to_sym do
    use_real_time
    attempt, client, client_port, server, server_port, delay_ms, outcome = sync "/osc*/hs/#{kind}"
    sample name, opts.merge(pan: hs_pan(client))
  end
end
