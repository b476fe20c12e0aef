// simple-peer's prebuilt browser bundle carries its own Node shims (events, buffer, process), so apps that embed
// dynamesh need no bundler configuration for them. Its API is simple-peer's.
declare module 'simple-peer/simplepeer.min.js' {
  import SimplePeer from 'simple-peer';
  export default SimplePeer;
}
