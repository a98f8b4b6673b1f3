// Moved to shared code (the reports list pages with it too).
export { Pager } from '@/components/pager';
