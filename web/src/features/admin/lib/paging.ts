// Moved to shared code (the reports list pages with it too).
export { hasNext, hasPrevious, offsetOfPage, pageLabel, previousOffset } from '@/lib/paging';
