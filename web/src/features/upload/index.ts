// The upload feature's public surface, for the app layer.
export { NewUploadPage } from './components/new-upload-page';
export { PreferencesPanel } from './components/preferences-panel';
export { UploadDetailPage } from './components/upload-detail-page';
export { UploadsPage } from './components/uploads-page';
export {
  clearDeviceData,
  engine as startUploadEngine,
  stopEngine as stopUploadEngine,
  unfinishedCount,
} from './lib/engine-instance';
